"""Progress that knows its totals, as plain lines when stderr is not a terminal.

Real runs (offline model) with stderr a pipe: no control codes, generation k of T, sessions done
/ asked against the budgets' bound, LM calls, tokens against a cap, failures, elapsed; the last
line's figures are the log's own. ``replay`` and ``resume`` show the same view; ``--no-progress``
shows none. (The terminal view is driven in tmux by test_watch_tmux.py.)
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio

from agents.progress import RunProgress, expected_counts
from events import make_event
from events.types import RunStarted
from store.sqlite import SqliteStore
from tests.live.test_notify import _log_bytes

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = json.loads((ROOT / "configs/quickstart.json").read_text())
LINE = re.compile(
    r"stop: gen (?P<gen>\d+)/2, sessions (?P<done>\d+)/(?P<asked>\d+) \(<=(?P<bound>\d+)\), "
    r"batches (?P<bd>\d+)/(?P<br>\d+), lm (?P<calls>\d+) calls \(<=(?P<cbound>\d+)\)(?: \+\d+ asked)?, "
    r"(?P<tok>\d+)/10000000 \(cap\) tok, \$0\.0000, failures (?P<fail>\d+), (?P<clock>elapsed|watched) \d+m\d\ds"
)


def _stop(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _fold(db: Path) -> RunProgress:
    async def read() -> RunProgress:
        store = await SqliteStore.open(db)
        try:
            prog = RunProgress()
            for ev in await store.read((await store.run_ids())[0]):
                prog.add(ev)
            return prog
        finally:
            await store.aclose()

    return anyio.run(read)


def _lines(stderr: str) -> list[re.Match[str]]:
    assert "\x1b" not in stderr, "no control codes when stderr is not a terminal"
    found = [LINE.match(ln) for ln in stderr.splitlines() if ln.startswith("stop: gen")]
    assert found and all(found), stderr
    return [m for m in found if m is not None]


def _check_last(lines: list[re.Match[str]], text: str, prog: RunProgress) -> None:
    last = lines[-1]
    assert text.rstrip().endswith("[finished]") or "[finished]" in text, text
    assert int(last["gen"]) == 2 and int(last["done"]) == int(last["asked"]) == prog.sessions_done > 0
    assert int(last["bound"]) >= prog.sessions_done and int(last["bound"]) == 2 * (1 + (3 + 2) * 2)
    assert int(last["calls"]) == prog.lm_calls and int(last["tok"]) == prog.tokens > 0
    assert int(last["bd"]) == int(last["br"]) == prog.batches_done > 0 and int(last["fail"]) == 0


def test_self_improve_then_replay_plain_lines_with_totals(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    cfg = ["--config", "configs/quickstart.json", "--max-tokens-total", "10000000"]
    run = _stop("self-improve", *cfg, "--store", str(db))
    assert run.returncode == 0, run.stderr[-2000:]
    lines = _lines(run.stderr)
    gens = [int(m["gen"]) for m in lines]
    assert gens == sorted(gens) and len(set(gens)) >= 2, run.stderr  # a line per new generation
    prog = _fold(db)
    last_line = [ln for ln in run.stderr.splitlines() if ln.startswith("stop: gen")][-1]
    _check_last(lines, last_line, prog)

    replay = _stop("replay", "latest", "--store", str(db))
    assert replay.returncode == 0 and "identical" in replay.stdout, replay.stderr[-2000:]
    rlines = _lines(replay.stderr)
    _check_last(rlines, [ln for ln in replay.stderr.splitlines() if ln.startswith("stop: gen")][-1], prog)

    quiet = _stop("replay", "latest", "--store", str(db), "--no-progress")
    assert quiet.returncode == 0 and "stop: gen" not in quiet.stderr, quiet.stderr


def test_resume_shows_time_watched_and_finishes(tmp_path: Path) -> None:
    db, cfg = tmp_path / "s.db", tmp_path / "c.json"
    cfg.write_text(json.dumps({**QUICKSTART, "max_tokens_total": 10000000}))
    run = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "self-improve", "--config", str(cfg), "--store", str(db), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and b"session.completed" not in _log_bytes(db):
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=120)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 130, err[-2000:]
    assert "stop: gen" not in err  # --no-progress
    resumed = _stop("resume", "latest", "--store", str(db))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = _lines(resumed.stderr)
    assert {m["clock"] for m in lines} == {"watched"}, resumed.stderr  # the run began before this process
    _check_last(lines, [ln for ln in resumed.stderr.splitlines() if ln.startswith("stop: gen")][-1], _fold(db))


def test_expected_totals_follow_the_budgets() -> None:
    mu = {"tasks": ["a", "b"], "runs": 3, "meta_utility_budget": 4, "improver": {"lm_calls": 5}}
    assert expected_counts("self-improve", {"generations": 2, "meta_utility": mu}, {}) == {
        "generations": 2,
        "sessions": 2 * (1 + (4 + 2) * 6),
        "lm_calls": 2 * (1 + (4 + 2) * 6) * 5,
    }
    assert expected_counts("improve", {"meta_utility": mu}, {}) == {"sessions": 1, "lm_calls": 5}
    assert expected_counts("transfer", {"meta_utility": mu}, {"tasks": ["x", "y", "z"]}) == {
        "sessions": 6,
        "lm_calls": 30,
    }
    assert expected_counts("transfer", {"meta_utility": mu}, {"tasks": ["x"], "runs": 4})["sessions"] == 8
    assert expected_counts("repair", {}, {"problems": ["p1", "p2"], "n_p": 3, "n_fr": 2}) == {
        "problems": 2,
        "programs": 2 * (3 + 3 * 2),
    }


def test_a_view_joining_a_run_under_way_shows_time_watched_and_rate_since() -> None:
    root = make_event(
        "r",
        RunStarted(
            command="repair", seed=0, config={"options": {"problems": ["a", "b"], "n_p": 1, "n_fr": 1}}, host={}
        ),
        cause=None,
        key=0,
    )
    prog = RunProgress().add(root)
    for i in range(2):  # the backlog: half the programs, seen after the fact
        prog.add(make_event("r", _program(i), cause=root, key=i))
    prog.go_live(1000.0)
    assert prog.joined_late and prog.fraction() == 0.5 and prog.eta_s(1010.0) is None  # no rate yet
    prog.add(make_event("r", _program(2), cause=root, key=2), at=1010.0)
    assert prog.eta_s(1010.0) == 10.0  # a quarter in 10 s since joining: the last quarter in 10 s more
    line = prog.line(1010.0)
    assert "problems 0/2" in line and "programs 3 (<=4)" in line and "watched 0m10s" in line and "left ~0m10s" in line


def _program(i: int) -> object:
    from events.stop_events import RepairProgram

    return RepairProgram(problem="a", kind="sample", program=f"{i:064x}", parent=None, feedback=None, tokens=1)
