"""A store write cancelled at any moment of its transaction leaves nothing open or half done.

Each kind of write (a fresh append with blobs and cache rows, a re-append that takes the
conflict-check path, a run start) is timed once, then cancelled at many moments spread over
that time and past it. After each cancellation: the transaction either happened whole or not at
all, the connection takes the next write at once, another connection can take the file's write
lock at once (nothing is left holding it), and every chain still verifies.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import anyio
import pytest

from events import Event, make_event, verify_chain
from events.types import Note, RunStarted
from store import CacheEntry, SqliteStore

POINTS = 40


def _lock_is_free(db: Path) -> bool:
    """Whether another connection can take the write lock right now (no wait)."""
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        con.close()


async def _cancelled_after(delay: float, op: Callable[[], Awaitable[object]]) -> bool:
    """Run ``op`` and cancel it ``delay`` seconds in; True if it finished first."""
    finished = False

    async def body() -> None:
        nonlocal finished
        await op()
        finished = True

    with anyio.move_on_after(delay):
        await body()
    return finished


def _notes(root: Event, tag: str, n: int) -> list[Event]:
    return [
        make_event(root.run_id, Note(tag, {"i": i, "pad": "x" * 200}), cause=root, key=f"{tag}/{i}") for i in range(n)
    ]


@pytest.mark.parametrize("kind", ["append", "reappend", "start_run"])
def test_cancel_at_many_points_of_a_transaction(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "stop.db"

    async def main() -> None:
        s = await SqliteStore.open(db, synchronous="FULL")
        root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
        await s.append([root])
        half = _notes(root, "half", 30)
        await s.append(half[:15])  # the re-append below meets these and takes the checking path

        def op_for(i: int) -> Callable[[], Awaitable[object]]:
            if kind == "append":
                evs = _notes(root, f"a{i}", 20)
                return lambda: s.append(evs, blobs=[f"blob {i}"], cache=[CacheEntry(f"k{i}", {"i": i})])
            if kind == "reappend":
                evs = half[:15] + _notes(root, f"b{i}", 10)
                return lambda: s.append(evs)
            return lambda: s.start_run(
                "run", lambda rid: make_event(rid, RunStarted("t", i, {}, {}), cause=None, key=0)
            )

        t0 = time.perf_counter()
        await op_for(-1)()
        took = time.perf_counter() - t0
        finished_some = cancelled_some = 0
        for i in range(POINTS):
            before = await s.read()
            done = await _cancelled_after(took * 1.5 * i / POINTS, op_for(i))
            finished_some += done
            cancelled_some += not done
            after = await s.read()
            added = after[len(before) :]
            assert [e.id for e in after[: len(before)]] == [e.id for e in before]
            # Whole or nothing: a cancelled append may still have committed, but never in part.
            expected = {"append": 20, "reappend": 10, "start_run": 1}[kind]
            assert len(added) in (0, expected), (i, len(added))
            if done:
                assert len(added) == expected
            if kind == "append" and added:
                assert await s.cache_get(f"k{i}") == {"i": i}
            assert _lock_is_free(db), f"cancel point {i}: a transaction was left holding the write lock"
            # The connection takes the next write at once.
            nxt = make_event("r", Note("next", {"i": i}), cause=root, key=f"next/{i}")
            with anyio.fail_after(10):
                assert (await s.append([nxt]))[0].id == nxt.id
        assert cancelled_some > 0  # the moments really reached inside the write
        runs = {e.run_id for e in await s.read()}
        for run in runs:
            assert verify_chain(await s.read(run)).ok, run
        await s.aclose()

    anyio.run(main)


def test_cancelled_readers_and_writers_share_one_connection(tmp_path: Path) -> None:
    """Reads cancelled mid-way never see or disturb another task's open transaction."""
    db = tmp_path / "stop.db"

    async def main() -> None:
        s = await SqliteStore.open(db, synchronous="OFF")
        root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
        await s.append([root])
        committed: set[str] = set()

        async def writer() -> None:
            for i in range(60):
                evs = _notes(root, f"w{i}", 5)
                if await _cancelled_after(0.0005 * (i % 7), partial(s.append, evs)):
                    committed.update(e.id for e in evs)

        async def reader() -> None:
            for i in range(200):
                with anyio.move_on_after(0.0003 * (i % 5)):
                    got = await s.read("r")
                    # Never a part of a transaction: every write adds 5 notes to the root.
                    assert (len(got) - 1) % 5 == 0, len(got)

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            tg.start_soon(reader)
            tg.start_soon(reader)
        got = await s.read("r")
        assert committed <= {e.id for e in got} and verify_chain(got).ok
        assert _lock_is_free(db)
        await s.aclose()

    anyio.run(main)
