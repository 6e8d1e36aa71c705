"""``stop watch`` in a real terminal: a tmux pane (its own server and socket), captured as it runs.

An offline run appends to a store from one process; ``stop watch`` follows it in a tmux pane (a
terminal, so the live ``rich`` view, not plain lines). The pane is captured repeatedly: the
generation counter must move (k of T) and, when the run ends, the pane's exit status must be the
run's own exit code: 0 for a finished run, 1 for one stopped at a spend cap.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stop_require import require

from lm.fake_server import IDENTITY, FakeOpenAIServer
from tests.live.test_watch import LATENCY_S, _has_run, slow_run

ROOT = Path(__file__).resolve().parents[2]
GENERATIONS = 4  # quickstart's budgets, more generations: a run outlasting the watch's start-up
GEN = re.compile(rf"gen (\d+)/{GENERATIONS}\b")


class Tmux:
    """One tmux server of its own (socket under the test's tmp dir), killed at the end."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock

    def __call__(self, *args: str) -> str:
        res = subprocess.run(
            ["tmux", "-S", str(self.sock), "-f", "/dev/null", *args], capture_output=True, text=True, timeout=30
        )
        assert res.returncode == 0, (args, res.stderr)
        return res.stdout

    @property
    def rc_file(self) -> Path:
        """Where the pane's shell writes the watch's exit code."""
        return self.sock.with_name("watch.rc")

    def pane(self) -> tuple[bool, int | None]:
        """(pane dead, the watch's exit status).

        The status is the one the pane's shell wrote: tmux's own ``pane_dead_status`` was seen
        empty for a pane that had exited normally on a loaded machine, so it is not relied on."""
        dead = self("display-message", "-p", "-t", "w", "#{pane_dead}").strip() == "1"
        text = self.rc_file.read_text().strip() if self.rc_file.exists() else ""
        return dead, int(text) if text else None


@pytest.fixture
def tmux(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        require("tmux", "tmux is not installed (make live-deps installs it)")
    sock = Path(tmp_path_factory.mktemp("tmux", numbered=True)) / "s"  # short: sockets have a path limit
    t = Tmux(sock)
    try:
        yield t
    finally:
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True, timeout=30)


def _stop(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def _watch_in_pane(tmux: Tmux, db: Path) -> None:
    cmd = shlex.join(_stop("watch", "latest", "--store", str(db)))
    # remain-on-exit keeps the dead pane (its last screen and exit status) until the server is killed
    rc = shlex.quote(str(tmux.rc_file))
    tmux("new-session", "-d", "-s", "w", "-x", "200", "-y", "40", "-c", str(ROOT), f"sleep 0.5; {cmd}; echo $? > {rc}")
    tmux("set-option", "-t", "w", "remain-on-exit", "on")


def _follow(tmux: Tmux, timeout_s: float = 240) -> tuple[list[int], str, int | None]:
    """Capture the pane until the watch exits: generation counters seen, last screen, exit code."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    screen = ""
    while time.monotonic() < deadline:
        dead, status = tmux.pane()
        screen = tmux("capture-pane", "-p", "-t", "w")
        gens = [int(g) for g in GEN.findall(screen)]
        if gens and (not seen or gens[-1] != seen[-1]):
            seen.append(gens[-1])
        if dead and status is not None:
            return seen, screen, status
        # the pane is dead once its shell has written the status and exited: wait for both
        time.sleep(0.2)
    raise AssertionError(f"stop watch did not exit within {timeout_s} s; last screen:\n{screen}")


def test_watch_in_a_terminal_follows_the_generations_and_exits_with_the_runs_code(tmux: Tmux, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with FakeOpenAIServer(IDENTITY, latency=LATENCY_S) as srv:
        run = slow_run(tmp_path, srv, GENERATIONS)
        try:
            deadline = time.monotonic() + 60
            while not _has_run(db) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _has_run(db), "the run never recorded run.started"
            _watch_in_pane(tmux, db)
            seen, screen, status = _follow(tmux)
            run_rc = run.wait(timeout=240)
        finally:
            run.kill()
            run.wait()
    assert run_rc == 0
    assert status == run_rc, screen
    assert len(set(seen)) >= 2 and seen == sorted(seen) and seen[-1] == GENERATIONS, (seen, screen)
    assert "finished" in screen and "self-improve" in screen, screen
    assert "adopted" in screen or "rejected" in screen, screen  # the latest decisions


def test_watch_in_a_terminal_exits_1_when_the_run_stops_at_its_cap(tmux: Tmux, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    args = ["--config", "configs/quickstart.json", "--store", str(db), "--no-progress", "--max-lm-calls", "3"]
    run = subprocess.run(_stop("self-improve", *args), cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 1, run.stderr[-2000:]
    _watch_in_pane(tmux, db)
    _, screen, status = _follow(tmux)
    assert status == 1, screen
    assert "budget_exhausted" in screen and "lm 3/3 calls" in screen, screen


def test_ctrl_c_stops_watching_with_130_and_leaves_the_run_alone(tmux: Tmux, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with FakeOpenAIServer(IDENTITY, latency=LATENCY_S) as srv:
        run = slow_run(tmp_path, srv, GENERATIONS)
        try:
            deadline = time.monotonic() + 60
            while not _has_run(db) and time.monotonic() < deadline:
                time.sleep(0.1)
            _watch_in_pane(tmux, db)
            deadline = time.monotonic() + 120
            while not GEN.search(tmux("capture-pane", "-p", "-t", "w")) and time.monotonic() < deadline:
                time.sleep(0.2)
            tmux("send-keys", "-t", "w", "C-c")
            _, screen, status = _follow(tmux, timeout_s=60)
            assert status == 130, screen
            assert run.poll() is None, "the watched run goes on"  # watch only reads
        finally:
            run.kill()
            run.wait()
