"""PostgreSQL-only store behaviour: URLs, schema versions, cross-process wake-ups, leases."""

from __future__ import annotations

import anyio
import asyncpg
import pytest
from pgserver import PgServer

from agents.claims import store_clock
from events import make_event
from events.types import Note, RunStarted
from store import (
    ForeignSchema,
    PostgresStore,
    SchemaTooNew,
    SqliteStore,
    StoreError,
    StoreNotFound,
    describe_store,
    open_store,
)
from store.postgres import SCHEMA_VERSION

pytestmark = pytest.mark.anyio


async def test_a_url_with_a_password_is_refused(pg_server: PgServer) -> None:
    url = pg_server.url.replace("stop@", "stop:stop-test-pw@")
    with pytest.raises(StoreError, match="holds a password") as info:
        await open_store(url)
    assert "stop-test-pw" not in str(info.value)
    assert info.value.exit_code == 2  # a usage error: nothing was connected to
    assert "stop-test-pw" not in describe_store(url)
    with pytest.raises(StoreError, match="holds a password"):
        await open_store(pg_server.url + "?password=x")


async def test_the_factory_chooses_by_url_or_path(pg_server: PgServer, tmp_path) -> None:
    pg = await open_store(await pg_server.fresh_url())
    lite = await open_store(tmp_path / "x.db")
    try:
        assert isinstance(pg, PostgresStore) and isinstance(lite, SqliteStore)
    finally:
        await pg.aclose()
        await lite.aclose()


async def test_missing_store_without_create_is_a_clear_error(pg_server: PgServer) -> None:
    with pytest.raises(StoreNotFound, match="no STOP store"):
        await PostgresStore.open(await pg_server.fresh_url(), create=False)
    bad = pg_server.url.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(StoreNotFound, match="no database"):
        await PostgresStore.open(bad)


async def test_newer_schema_is_refused_and_older_is_migrated(pg_server: PgServer) -> None:
    url = await pg_server.fresh_url()
    s = await PostgresStore.open(url)
    root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
    await s.append([root])
    # Back to schema 1 (no lease tables), as an older STOP left it: opening migrates it.
    await s._pool.execute("DROP TABLE stop_leases, stop_workers, stop_log_head")
    await s._pool.execute("UPDATE stop_meta SET value = '1' WHERE key = 'schema_version'")
    await s.aclose()
    s = await PostgresStore.open(url)
    assert await s._pool.fetchval("SELECT value FROM stop_meta WHERE key = 'schema_version'") == str(SCHEMA_VERSION)
    assert await s._pool.fetchval("SELECT count(*) FROM stop_leases") == 0
    assert [e.id for e in await s.read()] == [root.id]
    note = make_event("r", Note("after migration", {}), cause=root, key=1)
    assert [e.seq for e in await s.append([note])] == [2]  # the log head starts at the old end
    await s._pool.execute("UPDATE stop_meta SET value = '99' WHERE key = 'schema_version'")
    await s.aclose()
    with pytest.raises(SchemaTooNew, match="newer STOP"):
        await PostgresStore.open(url)


async def test_foreign_tables_are_refused(pg_server: PgServer) -> None:
    url = await pg_server.fresh_url()
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE stop_events (x int)")
    await conn.close()
    with pytest.raises(ForeignSchema, match="not a STOP store"):
        await PostgresStore.open(url)


async def test_notify_wakes_a_subscriber_in_another_connection(pg_server: PgServer) -> None:
    """The subscriber polls only every 60 s: an event seen within 10 s came by LISTEN/NOTIFY."""
    url = await pg_server.fresh_url()
    writer = await PostgresStore.open(url)
    reader = await PostgresStore.open(url, poll_seconds=60)
    root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
    got = []

    async def consume() -> None:
        async for ev in reader.subscribe("r"):
            got.append(ev)
            if len(got) == 2:
                return

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(0.3)
                await writer.append([root])
                await anyio.sleep(0.3)
                await writer.append([make_event("r", Note("n", {}), cause=root, key=1)])
    finally:
        await writer.aclose()
        await reader.aclose()
    assert [e.seq for e in got] == [1, 2]


async def test_leases_use_the_database_clock(pg_server: PgServer) -> None:
    s = await PostgresStore.open(await pg_server.fresh_url())
    try:
        db_now = await s._pool.fetchval("SELECT extract(epoch from clock_timestamp())::float8")
        assert abs(await store_clock(s) - db_now) < 5
        root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
        await s.append([root])
        assert await s.lease_expiry(root.id, 0) is None
        exp = await s.lease_renew(root, 0, "w@a:1:0", "a", 30.0)
        assert abs(exp - (db_now + 30)) < 5
        assert await s.lease_expiry(root.id, 0) == exp
        # Another worker cannot renew a lease it does not hold.
        assert await s.lease_renew(root, 0, "w@b:2:0", "b", 300.0) == 0.0
        assert await s.lease_expiry(root.id, 0) == exp
        # Renewals write a row, never an event.
        assert len(await s.read()) == 1
        # Who is working: the worker, its host, its live lease (what `stop runs --workers` shows).
        await s.worker_seen("w@a:1:0", "sandbox-runner", "a", 1)
        (seen,) = await s.workers()
        assert seen["host"] == "a" and seen["agent"] == "sandbox-runner"
        (lease,) = seen["live_leases"]
        assert lease["work_id"] == root.id and lease["attempt"] == 0 and 0 < lease["expires_in_s"] <= 30
    finally:
        await s.aclose()


async def test_appends_survive_lost_connections(pg_server: PgServer) -> None:
    """Every server connection of the store is killed (as a database failover would): the next
    append reconnects and succeeds, a re-append stays idempotent, subscriptions fall back to polling."""
    url = await pg_server.fresh_url()
    s = await PostgresStore.open(url, poll_seconds=0.1)
    s.listen_retry_s = 0.2
    s._listen_retry_at = 0.0
    try:
        root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
        await s.append([root])
        admin = await asyncpg.connect(pg_server.url)
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE 'stop@%' AND pid <> pg_backend_pid()"
        )
        await admin.close()
        assert killed >= 2  # the pool's connection and the listener
        note = make_event("r", Note("after", {}), cause=root, key=1)
        stored = await s.append([root, note])
        assert [e.seq for e in stored] == [1, 2]
        with anyio.fail_after(10):
            async for ev in s.subscribe("r", after=1):
                assert ev.id == note.id
                break
            async with anyio.create_task_group() as tg:  # the follow loop re-opens LISTEN
                tg.start_soon(_drain, s)
                while s._listener is None or s._listener.is_closed():  # noqa: ASYNC110 - state of another task
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
    finally:
        await s.aclose()


async def _drain(s: PostgresStore) -> None:
    async for _ in s.subscribe("r"):
        pass
