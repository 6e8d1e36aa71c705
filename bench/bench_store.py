"""Store figures: batched appends vs raw executemany, durable single appends, a 100k fold."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import anyio

from bench.harness import Figure
from events import Event, make_event
from events.types import Note, RunStarted
from store import Projection, SqliteStore, project
from store.planning import plan_append
from store.sqlite import _COLUMNS, _SCHEMA, _event_row

N_BATCHED = 20_000
BATCH = 500
N_SINGLE = 200
N_FOLD = 100_000


def _events(run_id: str, n: int) -> list:
    root = make_event(run_id, RunStarted("bench", 0, {}, {}), cause=None, key=0)
    return [root] + [make_event(run_id, Note("n", {"k": k, "v": k * 0.5}), cause=root, key=k) for k in range(n - 1)]


async def _batched(path: Path, events: list) -> float:
    s = await SqliteStore.open(path, synchronous="NORMAL")
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        await s.append(events[i : i + BATCH])
    took = time.perf_counter() - start
    await s.aclose()
    return took


def _raw(path: Path, events: list) -> float:
    """The floor: the same rows, pre-encoded and pre-chained, through sqlite3.executemany."""
    inserts, _ = plan_append(events, {}, lambda _r: None, 1)
    rows = [_event_row(e) for e in inserts]
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
        con.execute(stmt)
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        con.execute("BEGIN IMMEDIATE")
        con.executemany(f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows[i : i + BATCH])
        con.execute("COMMIT")
    took = time.perf_counter() - start
    con.close()
    return took


async def _single(path: Path) -> float:
    s = await SqliteStore.open(path, synchronous="FULL")
    evs = _events("single", N_SINGLE)
    start = time.perf_counter()
    for ev in evs:
        await s.append([ev])
    took = time.perf_counter() - start
    await s.aclose()
    return N_SINGLE / took


async def _fold(path: Path) -> float:
    s = await SqliteStore.open(path, synchronous="OFF")
    evs = _events("fold", N_FOLD)
    for i in range(0, len(evs), 5000):
        await s.append(evs[i : i + 5000])

    def count(st: dict[str, int], ev: Event) -> dict[str, int]:
        st[ev.type] = st.get(ev.type, 0) + 1
        return st

    counter: Projection[dict[str, int]] = Projection(dict, count)
    start = time.perf_counter()
    state = await project(s, "fold", counter)
    took = time.perf_counter() - start
    assert sum(state.values()) == N_FOLD
    await s.aclose()
    return took


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        evs = _events("batched", N_BATCHED)
        raw = min(_raw(tmp / f"raw{i}.db", evs) for i in range(3))
        ours = min(anyio.run(_batched, tmp / f"ours{i}.db", evs) for i in range(3))
        single = anyio.run(_single, tmp / "single.db")
        fold_s = anyio.run(_fold, tmp / "fold.db")
    return [
        Figure(
            "store.batched_vs_raw",
            raw / ours,
            "ratio",
            ">=",
            0.5,
            f"{N_BATCHED / ours:,.0f} ev/s vs raw {N_BATCHED / raw:,.0f} ev/s",
        ),
        Figure("store.batched_events_per_s", N_BATCHED / ours, "ev/s"),
        Figure(
            "store.durable_single_appends_per_s", single, "ev/s", note="synchronous=FULL, one event per transaction"
        ),
        Figure("store.fold_100k_s", fold_s, "s", "<", 2.0, "read + decode + fold, SQLite"),
    ]
