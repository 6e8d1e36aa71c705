"""A full disk, for real: a 2 MB tmpfs fills during a run; the run stops at once, says so in
one line (exit 3) and loses nothing; resume on the still-full disk fails the same way, fast."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from events import make_event, verify_chain
from events.types import Note, RunStarted
from store import SqliteStore, StoreFull

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "quickstart.json"


def _stop(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_store_full_keeps_what_was_recorded(small_tmpfs: Path) -> None:
    db = small_tmpfs / "log.db"

    async def main() -> None:
        s = await SqliteStore.open(db)
        root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
        await s.append([root])
        kept = [root]
        with pytest.raises(StoreFull) as info:
            for i in range(10_000):
                batch = [make_event("r", Note("x" * 2000, {"i": i}), cause=root, key=i)]
                kept += await s.append(batch)
        msg = info.value.render()
        assert f"disk full at {db}" in msg and "bytes free" in msg
        assert "nothing recorded was lost" in msg and "stop resume r" in msg
        assert info.value.exit_code == 3
        got = await s.read()
        assert [e.id for e in got] == [e.id for e in kept]
        assert verify_chain(got).ok
        await s.aclose()

    anyio.run(main)


def test_self_improve_on_full_disk_exits_3_once_and_resume_fails_fast(small_tmpfs: Path) -> None:
    db = small_tmpfs / "stop.db"
    before = _guests()
    done = _stop("self-improve", "--config", str(CONFIG), "--store", str(db), "--no-progress")
    assert done.returncode == 3, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("stop: error: disk full at")]
    assert len(lines) == 1, done.stderr[-3000:]
    assert "nothing recorded was lost; free space and run `stop resume self-improve-" in lines[0]
    # No sandbox worker of the run outlives it.
    deadline = time.monotonic() + 10
    while (left := _guests() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"sandbox workers left running: {left}"

    t0 = time.monotonic()
    again = _stop("resume", "latest", "--store", str(db), "--no-progress", timeout=120)
    assert again.returncode == 3, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert again.stderr.count("stop: error: disk full at") == 1
    assert time.monotonic() - t0 < 60  # fails fast (a hang would hit the timeout)


def _guests() -> set[int]:
    """Sandbox worker processes on this machine (their command line boots ``stop_guest``)."""
    out = subprocess.run(["pgrep", "-f", "stop_guest.worker"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}
