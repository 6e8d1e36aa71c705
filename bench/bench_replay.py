"""Replay figures: replay vs live wall time of the offline main job; comparison speed at 100k."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import anyio

from agents.config import load_config
from agents.session import RunRequest, start_and_run
from bench.harness import Figure
from events import make_event
from events.types import Note, RunStarted
from replay.compare import compare_runs
from replay.replayer import replay_run
from store import SqliteStore

REPO = Path(__file__).resolve().parents[1]
N_SYNTHETIC = 100_000


async def _live_then_replay(db: Path) -> tuple[float, float, int, bool]:
    store = await SqliteStore.open(db)
    try:
        config = load_config(REPO / "configs" / "quickstart.json")
        start = time.perf_counter()
        final = await start_and_run(store, RunRequest("self-improve", 0, config, {"improver": None}), progress=False)
        live = time.perf_counter() - start
        assert final.type == "run.finished", final.payload
        start = time.perf_counter()
        result = await replay_run(store, final.run_id)
        replay = time.perf_counter() - start
        live_calls = sum(1 for e in result.events if e.type == "lm.responded" and e.payload["source"] != "cache")
        return live, replay, live_calls, result.identical
    finally:
        await store.aclose()


def _synthetic_rate() -> float:
    root = make_event("r", RunStarted("bench", 0, {}, {}), cause=None, key=0)
    events = [root] + [make_event("r", Note("n", {"k": k}), cause=root, key=k) for k in range(N_SYNTHETIC - 1)]
    start = time.perf_counter()
    comparison = compare_runs(events, list(events))
    took = time.perf_counter() - start
    assert comparison.identical
    return N_SYNTHETIC / took


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as d:
        live, replay, calls, identical = anyio.run(_live_then_replay, Path(d) / "bench.db")
    return [
        Figure("replay.live_main_job_s", live, "s"),
        Figure("replay.replay_main_job_s", replay, "s", note="identical" if identical else "DIVERGED"),
        Figure(
            "replay.speedup_vs_live",
            live / replay,
            "ratio",
            ">=",
            20.0,
            "improvers re-run in the sandbox; LM answers and evaluations served from the log",
        ),
        Figure("replay.lm_calls", calls, "calls", "<=", 0),
        Figure("replay.compare_events_per_s_100k", _synthetic_rate(), "ev/s"),
    ]
