"""Helpers for the replay and resume tests: run `stop` as a real subprocess, read stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio

from events import Event
from store import SqliteStore

STOP = [sys.executable, "-m", "cli.main"]
REPO = Path(__file__).resolve().parents[2]

#: Small but complete: 1 generation, 2 meta-utility runs, 2 candidates per call.
TINY_CONFIG: dict[str, Any] = {
    "generations": 1,
    "lease_s": 5,
    "meta_utility": {
        "tasks": ["parity_noise"],
        "runs": 2,
        "meta_utility_budget": 2,
        "improver": {"responses_per_call": 2, "lm_calls": 1, "utility_calls": 2},
    },
}


def write_config(path: Path, extra: dict[str, Any] | None = None) -> Path:
    path.write_text(json.dumps({**TINY_CONFIG, **(extra or {})}))
    return path


def stop_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "STOP_CRASH"))}
    env.update(extra)
    return env


def run_stop(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STOP, *args], capture_output=True, text=True, timeout=timeout, env=env or stop_env(), cwd=REPO
    )


def read_run(db: Path) -> tuple[str, list[Event]]:
    async def main() -> tuple[str, list[Event]]:
        s = await SqliteStore.open(db, create=False)
        try:
            run_id = (await s.run_ids())[0]
            return run_id, await s.read(run_id)
        finally:
            await s.aclose()

    return anyio.run(main)
