"""Fixtures for the inspection tests: a synthetic self-improve log in a SQLite store."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import pytest
from stop_require import require

sys.path.insert(0, str(Path(__file__).parent))

from inspect_browser import install_chromium
from inspect_synth import self_improve_run, write

from store.sqlite import SqliteStore


def _make_db(path: Path, runs: Sequence[tuple[str, float]]) -> Path:
    async def body() -> None:
        store = await SqliteStore.open(path)
        try:
            for run_id, c2 in runs:
                await write(store, self_improve_run(run_id, c2_utility=c2))
        finally:
            await store.aclose()

    anyio.run(body)
    return path


@pytest.fixture
def synth_db(tmp_path: Path) -> Path:
    """A store holding run-a and run-b (identical but for one utility) and run-c (= run-a)."""
    return _make_db(tmp_path / "stop.db", [("run-a", 0.1), ("run-b", 0.15), ("run-c", 0.1)])


@pytest.fixture
def make_db(tmp_path: Path) -> Callable[[str, Sequence[tuple[str, float]]], Path]:
    return lambda name, runs: _make_db(tmp_path / name, runs)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; the Debian package ``chromium`` is installed with apt when missing."""
    found = install_chromium()
    if found is None:
        require("chromium", "no Chromium and apt-get could not install the Debian package 'chromium'")
    return found
