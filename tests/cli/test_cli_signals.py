"""SIGINT, SIGTERM and SIGHUP stop a real ``stop self-improve`` at many moments: the exit code says
which signal (130/143/129), stderr has a message and no traceback, no process of the run (sandbox
workers, bubblewrap and their children included) outlives it by more than a few seconds, and
``stop resume`` then finishes the run."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from proctree import descendants, session_members

ROOT = Path(__file__).resolve().parents[2]
STOP = [sys.executable, "-m", "cli.main"]
QUICKSTART = str(ROOT / "configs" / "quickstart.json")
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def _catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` has installed a SIGTERM handler (``stop`` does so first thing in main)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except OSError:
        pass
    return False


def _events(store: Path) -> int:
    """Events recorded so far (read-only; the store may not exist yet)."""
    if not store.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)) as db:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.Error:
        return 0


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def _interrupt(store: Path, sig: signal.Signals, ready: str, extra_s: float) -> tuple[int, str, set[int]]:
    """Start a run, wait for the moment ``ready`` (then ``extra_s`` more), send ``sig``.

    Returns (exit code, stderr, processes of the run still alive 5 s after it exited)."""
    proc = subprocess.Popen(
        [*STOP, "self-improve", "--config", QUICKSTART, "--store", str(store), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= descendants(proc.pid)
            if ready == "start-up" and _catches_sigterm(proc.pid):
                break
            if ready.startswith("workers>=") and len(descendants(proc.pid)) >= int(ready.split(">=")[1]):
                break
            if ready.startswith("events>=") and _events(store) >= int(ready.split(">=")[1]):
                break
            time.sleep(0.01)
        assert proc.poll() is None, (
            f"the run ended before the moment {ready!r}: {proc.stderr.read() if proc.stderr else ''}"
        )
        end = time.monotonic() + extra_s
        while time.monotonic() < end:
            seen |= descendants(proc.pid)
            time.sleep(0.01)
        seen |= descendants(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    sessions = {pid for pid in seen if _alive({pid})} | seen
    left = _alive(seen)
    until = time.monotonic() + 5
    while time.monotonic() < until:
        left = _alive(seen) | (session_members(sessions) - {os.getpid()})
        if not left:
            break
        time.sleep(0.1)
    return proc.returncode, err, left


MOMENTS = [
    ("start-up", 0.0, signal.SIGINT),
    ("start-up", 0.0, signal.SIGTERM),
    ("workers>=1", 0.0, signal.SIGHUP),
    ("workers>=1", 0.15, signal.SIGINT),
    ("workers>=4", 0.0, signal.SIGTERM),
    ("workers>=4", 0.7, signal.SIGHUP),
    ("workers>=4", 1.5, signal.SIGINT),
    ("workers>=4", 3.0, signal.SIGTERM),
    ("events>=30", 0.0, signal.SIGHUP),
]


@pytest.mark.parametrize(("ready", "extra_s", "sig"), MOMENTS, ids=[f"{r}+{e}s-{s.name}" for r, e, s in MOMENTS])
def test_interrupt_exits_cleanly_and_leaves_no_process(
    tmp_path: Path, ready: str, extra_s: float, sig: signal.Signals
) -> None:
    code, err, left = _interrupt(tmp_path / "stop.db", sig, ready, extra_s)
    assert code == EXIT[sig], err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted" in err
    assert not left, f"processes of the run still alive: {left}"


def test_resume_finishes_an_interrupted_run(tmp_path: Path) -> None:
    store = tmp_path / "stop.db"
    code, err, left = _interrupt(store, signal.SIGTERM, "events>=40", 0.0)
    assert code == 143 and not left, err
    assert "stop resume" in err  # it says how to continue
    done = subprocess.run(
        [*STOP, "resume", "latest", "--store", str(store), "--json", "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert '"status": "finished"' in done.stdout
