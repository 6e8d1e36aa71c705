"""Fixtures for the dashboard tests: Chromium (as the report tests find it) and a finished run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from stop_require import require

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "inspect"))

from dash_procs import finished_run
from inspect_browser import install_chromium


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; the Debian package ``chromium`` is installed with apt when missing."""
    found = install_chromium()
    if found is None:
        require("chromium", "no Chromium and apt-get could not install the Debian package 'chromium'")
    return found


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A store holding two finished offline runs that differ only by seed."""
    store = tmp_path_factory.mktemp("dash") / "stop.db"
    a = finished_run(store)
    b = finished_run(store, "--seed", "1")
    return store, a, b
