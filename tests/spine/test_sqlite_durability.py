"""SQLite store under real concurrency, crashes, tampering and bad input."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from events import make_event, verify_chain
from events.types import Note, RunStarted
from store import (
    CorruptBlob,
    CorruptStore,
    ForeignSchema,
    Projection,
    SchemaTooNew,
    SqliteStore,
    StoreFull,
    StoreNotFound,
    StoreReadOnly,
    fold,
    project,
)

APPENDER = textwrap.dedent(
    """
    import sys, anyio
    from events import make_event
    from events.types import Note, RunStarted
    from store import SqliteStore

    path, run_id, count, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    async def main():
        s = await SqliteStore.open(path, synchronous=sys.argv[5] if len(sys.argv) > 5 else "NORMAL")
        root = make_event(run_id, RunStarted("append", 0, {}, {}), cause=None, key=0)
        await s.append([root])
        have = len(await s.read(run_id)) - 1
        k = have
        while count < 0 or k < count:
            evs = [make_event(run_id, Note("n", {"k": k + j, "pad": "x" * 200}), cause=root, key=k + j)
                   for j in range(batch)]
            await s.append(evs)
            k += batch
            if count < 0:
                print(k, flush=True)
        await s.aclose()

    anyio.run(main)
    """
)


def _spawn(db: Path, run_id: str, count: int, batch: int = 1, sync: str = "NORMAL") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(db), run_id, str(count), str(batch), sync],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _read_all(db: Path) -> list:
    s = await SqliteStore.open(db, create=False)
    try:
        return await s.read()
    finally:
        await s.aclose()


def test_four_processes_append_concurrently(tmp_path: Path) -> None:
    """4 processes x 2,000 events on one file: 8,000 (+4 roots), none lost or duplicated."""
    db = tmp_path / "log.db"
    procs = [_spawn(db, f"run{i}", 2000, batch=1, sync="OFF") for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=280)
        assert p.returncode == 0, err
    events = anyio.run(_read_all, db)
    assert len(events) == 8004
    assert len({e.id for e in events}) == 8004
    assert [e.seq for e in events] == list(range(1, 8005))
    for i in range(4):
        mine = [e for e in events if e.run_id == f"run{i}"]
        assert sorted(e.payload["data"]["k"] for e in mine[1:]) == list(range(2000))
        assert verify_chain(mine).ok


def test_sigkill_at_random_moments_leaves_a_sound_log(tmp_path: Path) -> None:
    """20 SIGKILLs mid-append: the file opens, events are whole, chains verify, appends go on."""
    db = tmp_path / "log.db"
    rng = random.Random(20261121)
    for round_ in range(20):
        proc = _spawn(db, "victim", -1, batch=rng.choice([1, 5, 50]))
        assert proc.stdout is not None
        proc.stdout.readline()  # it is appending now
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        events = anyio.run(_read_all, db)
        assert verify_chain(events).ok, round_
        ks = [e.payload["data"]["k"] for e in events[1:]]
        assert ks == list(range(len(ks)))  # whole batches only, in order, no gaps
    # appends continue after the last crash
    proc = _spawn(db, "victim", len(ks) + 10, batch=1)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    events = anyio.run(_read_all, db)
    assert verify_chain(events).ok and len(events) == len(ks) + 11


def test_tampering_with_a_payload_byte_is_named(tmp_path: Path) -> None:
    db = tmp_path / "log.db"

    async def write() -> str:
        s = await SqliteStore.open(db)
        root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
        evs = [root] + [make_event("r", Note(f"n{i}", {"v": i}), cause=root, key=i) for i in range(10)]
        await s.append(evs)
        await s.aclose()
        return evs[6].id

    victim = anyio.run(write)
    con = sqlite3.connect(db)
    con.execute("UPDATE events SET payload = replace(payload, '\"v\":5', '\"v\":6') WHERE id = ?", (victim,))
    con.commit()
    con.close()
    report = verify_chain(anyio.run(_read_all, db))
    assert not report.ok
    assert report.broken_at == victim
    assert "content" in report.reason


def test_tampering_with_a_blob_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "log.db"

    async def write() -> str:
        s = await SqliteStore.open(db)
        h = await s.put_blob("def algorithm():\n    return 1\n")
        await s.aclose()
        return h

    digest = anyio.run(write)
    con = sqlite3.connect(db)
    con.execute("UPDATE blobs SET data = ? WHERE hash = ?", (b"def algorithm():\n    return 2\n", digest))
    con.commit()
    con.close()

    async def read() -> None:
        s = await SqliteStore.open(db)
        try:
            await s.get_blob(digest)
        finally:
            await s.aclose()

    with pytest.raises(CorruptBlob, match=digest):
        anyio.run(read)


# ---- bad input ---------------------------------------------------------------------------


def _open(path: Path, **kw: object) -> SqliteStore:
    return anyio.run(lambda: SqliteStore.open(path, **kw))  # type: ignore[arg-type]


def test_missing_file_without_create_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound, match="no store at"):
        _open(tmp_path / "nope.db", create=False)
    assert not (tmp_path / "nope.db").exists()


def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "junk.db"
    junk = os.urandom(8192)
    db.write_bytes(junk)
    with pytest.raises(CorruptStore, match="not a readable STOP store"):
        _open(db)
    assert db.read_bytes() == junk


def test_foreign_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    con.execute("INSERT INTO customers VALUES (1, 'ada')")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(ForeignSchema, match="another program"):
        _open(db)
    assert db.read_bytes() == before


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    anyio.run(lambda: _aclose(_open_async(db)))
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNew, match="newer STOP"):
        _open(db)


async def _open_async(db: Path) -> SqliteStore:
    return await SqliteStore.open(db)


async def _aclose(coro: object) -> None:
    s = await coro  # type: ignore[misc]
    await s.aclose()


def test_read_only_database_rejects_appends_and_keeps_events(tmp_path: Path) -> None:
    """A store SQLite opens read-only (as for a read-only file) refuses appends clearly."""
    db = tmp_path / "ro.db"

    async def main() -> None:
        s = await SqliteStore.open(db)
        root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
        await s.append([root])
        await s._conn.execute("PRAGMA query_only = ON")
        with pytest.raises(StoreReadOnly):
            await s.append([make_event("r", Note("x", {}), cause=root, key=1)])
        assert len(await s.read()) == 1
        await s.aclose()

    anyio.run(main)


def test_full_disk_rolls_back_and_keeps_earlier_events(tmp_path: Path) -> None:
    db = tmp_path / "full.db"

    async def main() -> None:
        s = await SqliteStore.open(db)
        root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
        await s.append([root])
        pages = next(iter(await s._conn.execute_fetchall("PRAGMA page_count")))[0]
        await s._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        big = [make_event("r", Note("x" * 4000, {}), cause=root, key=i) for i in range(50)]
        with pytest.raises(StoreFull, match="nothing recorded was lost"):
            await s.append(big)
        got = await s.read()
        assert [e.id for e in got] == [root.id]
        assert verify_chain(got).ok
        await s.aclose()

    anyio.run(main)


def test_cross_process_subscription_wakes(tmp_path: Path) -> None:
    """A subscriber sees events another process appends to the same file."""
    db = tmp_path / "log.db"

    async def main() -> None:
        s = await SqliteStore.open(db)
        seen = []
        with anyio.fail_after(60):
            proc = _spawn(db, "remote", 30, batch=3)
            async for ev in s.subscribe("remote", types={"note"}):
                seen.append(ev.payload["data"]["k"])
                if len(seen) == 30:
                    break
            await anyio.to_thread.run_sync(proc.communicate)
        assert seen == list(range(30))
        await s.aclose()

    anyio.run(main)


def test_projection_rebuilds_state_from_the_log(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    counter: Projection[dict[str, int]] = Projection(dict, lambda st, ev: {**st, ev.type: st.get(ev.type, 0) + 1})

    async def main() -> None:
        s = await SqliteStore.open(db)
        root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
        evs = [root] + [make_event("r", Note("n", {}), cause=root, key=i) for i in range(25)]
        await s.append(evs)
        assert await project(s, "r", counter, page=7) == {"run.started": 1, "note": 25}
        assert fold(evs, counter) == {"run.started": 1, "note": 25}
        await s.aclose()

    anyio.run(main)
