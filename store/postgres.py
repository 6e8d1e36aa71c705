"""PostgreSQL event store: one log shared by agents on many machines.

Driver: **asyncpg** (0.32) rather than psycopg 3: it implements the protocol itself (binary
format, prepared statements, no libpq) and has first-class ``LISTEN`` support
(``add_listener``), which the subscriptions use; its one constraint, asyncio, is anyio's default
backend, and every call here is made from anyio tasks on that loop. It reads the password from
``PGPASSWORD`` or ``~/.pgpass`` (``PGPASSFILE``) as libpq does, so a URL never has to hold one
(and one that does is refused).

Concurrency. An append is one transaction:

1. ``pg_advisory_xact_lock`` on each run the batch touches (taken in key order, so two batches
   never deadlock): the per-run hash chain is serialised per run, not globally, while ids,
   heads, blobs and cache rows are read and checked;
2. blobs and LM cache rows are written (a cache key written concurrently by another machine is
   compared with what won, exactly as a stored key is);
3. only then the one log-head row is locked (``UPDATE stop_log_head ... RETURNING``) for the
   sequence numbers, the event rows and ``COMMIT``, so sequence numbers become visible in commit
   order. This is the one point every inserting append passes through, and it is short on
   purpose: followers read ``seq > after``, and with numbers from a plain SEQUENCE a
   transaction holding seq 9 could commit after one holding seq 10, and a follower would skip 9
   for ever.

Re-appending an event is idempotent and a different content under a stored id is a
``ConflictError``: the same pure planner (``store.planning``) as SQLite and memory decides.
A ``NOTIFY`` sent inside the append transaction (delivered on commit) wakes subscribers on every
machine; they also poll, so a lost notification connection only delays them.

Leases (``agents.claims``) use two tables beside the log: ``stop_leases`` (renewals, so a long
session does not write an event every few seconds) and ``stop_workers`` (who was seen, where),
with times taken from the database's clock so hosts with skewed clocks agree on expiry.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import asyncpg
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from events.codec import canonical_json, sha256_hex
from events.model import Event, stored_event
from outcome import ExitCode, UsageError
from store.base import CacheEntry, blob_bytes
from store.errors import (
    CorruptBlob,
    ForeignSchema,
    SchemaTooNew,
    StoreError,
    StoreNotFound,
    StoreReadOnly,
    StoreUnavailable,
)
from store.follow import follow
from store.planning import blob_rows, check_cache, next_run_id, plan_append
from store.tail import DEFAULT_CAPACITY, POLL_PAGE, Tail

__all__ = (
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "PasswordInUrl",
    "PostgresStore",
    "check_url",
    "is_postgres_url",
    "redact_url",
)

log = structlog.get_logger("store")

SCHEMA_NAME = "stop-event-log"
#: 1: events, blobs, LM cache; 2: lease and worker tables beside the log, the log-head row.
SCHEMA_VERSION = 2

_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE stop_events (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    causation_id TEXT,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX stop_events_by_run ON stop_events (run_id, seq);
CREATE INDEX stop_events_by_type ON stop_events (type, seq);
CREATE INDEX stop_events_by_cause ON stop_events (causation_id, seq);
CREATE TABLE stop_blobs (hash TEXT PRIMARY KEY, data BYTEA NOT NULL);
CREATE TABLE stop_lm_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""",
    2: """
CREATE TABLE stop_leases (
    work_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    worker TEXT NOT NULL,
    host TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    renewed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (work_id, attempt)
);
CREATE TABLE stop_log_head (one BOOLEAN PRIMARY KEY CHECK (one), seq BIGINT NOT NULL);
INSERT INTO stop_log_head SELECT true, COALESCE(MAX(seq), 0) FROM stop_events;
CREATE TABLE stop_workers (
    worker TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL
);
""",
}

_COLUMNS = "seq, id, run_id, type, version, causation_id, key, payload, prev_hash, hash"
_INSERT = f"INSERT INTO stop_events ({_COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])"
_INSERT_AND_NOTIFY = f"WITH ins AS ({_INSERT}) SELECT pg_notify($11, $12)"
#: The batch's stored events (tag 0) and the head of each of its runs (tag 1), in one trip.
_EXISTING_AND_HEADS = (
    f"SELECT 0, {_COLUMNS} FROM stop_events WHERE id = ANY($1::text[]) UNION ALL"
    f" SELECT 1, h.* FROM unnest($2::text[]) AS r(run_id) CROSS JOIN LATERAL"
    f" (SELECT {_COLUMNS} FROM stop_events e WHERE e.run_id = r.run_id ORDER BY e.seq DESC LIMIT 1) h"
)
_CHANNEL = "stop_events"
_POLL_SECONDS = 1.0
_TIMEOUT_S = 60.0
#: The clock every machine agrees on: the database server's, in Unix seconds.
_NOW = "extract(epoch from clock_timestamp())::float8"


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` (runs, the log, schema setup)."""
    return int.from_bytes(hashlib.sha256(b"stop:" + name.encode("utf-8")).digest()[:8], "big", signed=True)


_SCHEMA_LOCK = _lock_key("schema")


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without any password (what may be printed or recorded)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


class PasswordInUrl(StoreError, UsageError):
    """A store URL holding a password: refused before anything connects (exit 2)."""

    exit_code = ExitCode.USAGE


def check_url(url: str) -> None:
    """Refuse a URL holding a password: it would end up in shell history, ``ps`` and logs."""
    parts = urlsplit(url)
    if parts.password is not None or "password=" in parts.query.lower():
        raise PasswordInUrl(
            f"the store URL {redact_url(url)} holds a password; passwords are never taken from URLs, nor recorded",
            hint="remove it from the URL and set PGPASSWORD or a ~/.pgpass entry instead",
        )


def _row_to_event(row: Sequence[Any]) -> Event:
    return stored_event(
        seq=row[0],
        id=row[1],
        run_id=row[2],
        type=row[3],
        version=row[4],
        causation_id=row[5],
        key=row[6],
        payload=json.loads(row[7]),
        prev_hash=row[8],
        hash=row[9],
    )


def _as_read(e: Event) -> Event:
    """A row an append inserted, built as a read of it builds it (for the tail)."""
    row = (e.seq, e.id, e.run_id, e.type, e.stored_version, e.causation_id, e.key, e.payload_json, e.prev_hash, e.hash)
    return _row_to_event(row)


def _select_sql(
    run_id: str | None, after: int, below: int | None, limit: int | None, types: Collection[str] | None
) -> tuple[str, list[Any]]:
    where = ["seq > $1"]
    params: list[Any] = [after]
    if below is not None:
        params.append(below)
        where.append(f"seq < ${len(params)}")
    if run_id is not None:
        params.append(run_id)
        where.append(f"run_id = ${len(params)}")
    if types is not None:
        params.append(sorted(types))
        where.append(f"type = ANY(${len(params)}::text[])")
    sql = f"SELECT {_COLUMNS} FROM stop_events WHERE {' AND '.join(where)} ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, params


def _columns(events: Sequence[Event]) -> list[list[Any]]:
    return [
        [e.seq for e in events],
        [e.id for e in events],
        [e.run_id for e in events],
        [e.type for e in events],
        [e.stored_version for e in events],
        [e.causation_id for e in events],
        [e.key for e in events],
        [e.payload_json for e in events],
        [e.prev_hash for e in events],
        [e.hash for e in events],
    ]


class _LostConnection(Exception):
    """The connection a statement ran on is gone (server restart, failover, killed backend)."""


def _transient(exc: BaseException) -> bool:
    """A lost connection or a server restarting: safe to retry, since a re-append of events
    that did commit is idempotent (the stored events come back)."""
    return isinstance(
        exc,
        OSError
        | _LostConnection
        | asyncpg.ConnectionDoesNotExistError
        | asyncpg.CannotConnectNowError
        | asyncpg.AdminShutdownError
        | asyncpg.ConnectionFailureError,
    )


def _retrying() -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception(_transient),
        wait=wait_random_exponential(multiplier=0.1, max=2.0),
        stop=stop_after_attempt(6),
        reraise=True,
    )


def _map_error(exc: BaseException, where: str) -> StoreError:
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StoreNotFound(f"no database at {where}: {exc} (create it with createdb first)")
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError | asyncpg.InsufficientPrivilegeError):
        return StoreReadOnly(f"store {where} is not writable here: {exc}")
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
        return StoreUnavailable(f"cannot log in to {where}: {exc} (set PGPASSWORD or a ~/.pgpass entry)")
    if isinstance(exc, OSError | asyncpg.CannotConnectNowError | asyncpg.ConnectionDoesNotExistError):
        return StoreUnavailable(f"cannot reach PostgreSQL at {where}: {exc}")
    return StoreError(f"store {where}: {exc}")


class PostgresStore:
    """Use ``await PostgresStore.open(url)``; close with ``aclose``. Safe to share between tasks."""

    #: How often a lost LISTEN connection is re-opened, at most.
    listen_retry_s = 5.0

    def __init__(
        self, pool: asyncpg.Pool, url: str, *, poll_seconds: float, tail_capacity: int = DEFAULT_CAPACITY
    ) -> None:
        self._pool = pool
        self.url = url
        self.path = redact_url(url)  # what messages name (the CLI prints ``store.path``)
        self._poll_s = poll_seconds
        #: The newest committed events, shared by every subscriber (see ``store.tail``).
        self._tail = Tail(tail_capacity, as_read=_as_read)
        #: Statements and transactions sent to the server, for the benchmarks.
        self.db_calls = 0
        self._listener: asyncpg.Connection | None = None
        self._listen_settings: dict[str, str] = {}
        self._listen_retry_at = 0.0

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        url: str,
        *,
        create: bool = True,
        readonly: bool = False,
        poll_seconds: float = _POLL_SECONDS,
        listen: bool = True,
        max_connections: int = 4,
        tail_capacity: int = DEFAULT_CAPACITY,
    ) -> PostgresStore:
        check_url(url)
        settings = {"application_name": f"stop@{socket.gethostname()}:{os.getpid()}"}
        if readonly:
            settings["default_transaction_read_only"] = "on"
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=max_connections,
                command_timeout=_TIMEOUT_S,
                server_settings=settings,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise _map_error(e, redact_url(url)) from e
        store = cls(pool, url, poll_seconds=poll_seconds, tail_capacity=tail_capacity)
        try:
            await store._setup(create=create and not readonly)
            store._tail.reset(await store.last_seq())
            if listen:
                await store._listen(settings)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await store.aclose()
            raise
        return store

    async def _setup(self, *, create: bool) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if create:
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                tables = {
                    r[0]
                    for r in await conn.fetch(
                        "SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema = current_schema() AND table_name LIKE 'stop\\_%'"
                    )
                }
                version = 0
                if tables:
                    if "stop_meta" not in tables:
                        raise ForeignSchema(
                            f"{self.path} has tables named stop_* ({', '.join(sorted(tables)[:5])}) but no"
                            " stop_meta: not a STOP store; refusing to touch it"
                        )
                    meta = {r[0]: r[1] for r in await conn.fetch("SELECT key, value FROM stop_meta")}
                    if meta.get("schema") != SCHEMA_NAME:
                        raise ForeignSchema(f"{self.path} holds schema {meta.get('schema')!r}, not {SCHEMA_NAME!r}")
                    version = int(meta.get("schema_version", "0"))
                    if version > SCHEMA_VERSION:
                        raise SchemaTooNew(
                            f"{self.path} was written by a newer STOP (schema {version}, this code reads"
                            f" up to {SCHEMA_VERSION}); upgrade the code to open it"
                        )
                elif not create:
                    raise StoreNotFound(f"no STOP store in {self.path} (run a command that records a run first)")
                if version < SCHEMA_VERSION:
                    if not create:
                        raise StoreReadOnly(
                            f"{self.path} holds schema {version}; open it writable once to migrate it to"
                            f" {SCHEMA_VERSION}"
                        )
                    if version == 0:
                        await conn.execute("CREATE TABLE stop_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                        await conn.execute("INSERT INTO stop_meta VALUES ('schema', $1)", SCHEMA_NAME)
                    for v in range(version + 1, SCHEMA_VERSION + 1):
                        await conn.execute(_MIGRATIONS[v])
                        log.info("store.migrated", store=self.path, schema_version=v)
                    await conn.execute(
                        "INSERT INTO stop_meta VALUES ('schema_version', $1)"
                        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        str(SCHEMA_VERSION),
                    )
        except asyncpg.PostgresError as e:
            raise _map_error(e, self.path) from e

    async def _listen(self, settings: dict[str, str]) -> None:
        self._listen_settings = settings
        try:
            self._listener = await asyncpg.connect(self.url, server_settings=settings)
            await self._listener.add_listener(_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            log.warning("store.no_listen", store=self.path, error=str(e), poll_s=self._poll_s)
            self._listener = None
        self._listen_retry_at = anyio.current_time() + self.listen_retry_s

    async def _poll(self, after: int) -> list[Event]:
        """A page of the log after ``after``: the tail's poll for other machines' appends (one
        per store, however many subscribers). It also re-opens a lost LISTEN connection (at
        most every 5 s), so wake-ups come back after a server restart without a background task."""
        lost = self._listen_settings and (self._listener is None or self._listener.is_closed())
        if lost and anyio.current_time() >= self._listen_retry_at:
            if self._listener is not None:
                self._listener.terminate()
                self._listener = None
            await self._listen(self._listen_settings)
        sql, params = _select_sql(None, after, None, POLL_PAGE, None)
        return [_row_to_event(r) for r in await self._fetch(sql, *params)]

    def _notified(self, _conn: object, _pid: object, _channel: object, payload: object) -> None:
        """A commit on some machine, up to the seq in ``payload``: the tail polls unless it
        already holds it (this process's own appends are in it before their notification)."""
        try:
            seq = int(str(payload))
        except ValueError:
            seq = self._tail.end + 1
        self._tail.note_head(seq)

    async def _record(self, inserted: Sequence[Event]) -> None:
        """Put what an append just committed into the tail (call it shielded, after the
        commit); a gap before it is read first (appends of other machines, or of this
        process's other connections committed earlier but recorded later)."""

        async def fill(after: int, below: int) -> list[Event]:
            sql, params = _select_sql(None, after, below, None, None)
            return [_row_to_event(r) for r in await self._fetch(sql, *params)]

        if inserted:
            await self._tail.record(inserted, fill)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            if self._listener is not None:
                listener, self._listener = self._listener, None
                try:
                    await listener.close(timeout=5)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    listener.terminate()
            await self._pool.close()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- writing -------------------------------------------------------------------------
    async def append(
        self,
        events: Sequence[Event],
        *,
        blobs: Sequence[bytes | str] = (),
        cache: Sequence[CacheEntry] = (),
    ) -> list[Event]:
        # Shielded: a cancelled caller neither leaves a half-open transaction on a pooled
        # connection nor loses an append the server may already have committed; asyncpg's
        # command timeout bounds how long the shield can hold.
        with anyio.CancelScope(shield=True):
            try:
                async for attempt in _retrying():
                    with attempt:
                        async with self._pool.acquire() as conn:
                            try:
                                self.db_calls += 1
                                out, inserted = await self._append_txn(conn, events, blobs, cache)
                            except (asyncpg.InterfaceError, asyncpg.InternalClientError) as e:
                                if conn.is_closed():
                                    raise _LostConnection(str(e)) from e
                                raise
            except (OSError, _LostConnection, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                raise _map_error(e, self.path) from e
            await self._record(inserted)
        return out

    async def start_run(self, prefix: str, make_root: Callable[[str], Event]) -> Event:
        """Allocate the next free run id ``PREFIX-N`` and append its first event in one
        transaction, under an advisory lock on the prefix: concurrent starts get different ids."""
        with anyio.CancelScope(shield=True):
            try:
                async for attempt in _retrying():
                    with attempt:
                        async with self._pool.acquire() as conn, conn.transaction():
                            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key("prefix:" + prefix))
                            rows = await conn.fetch(
                                "SELECT DISTINCT run_id FROM stop_events WHERE left(run_id, length($1)) = $1",
                                prefix + "-",
                            )
                            root = make_root(next_run_id(prefix, [r[0] for r in rows]))
                            self.db_calls += 1
                            out, inserted = await self._append_txn(conn, [root], (), ())
            except (OSError, _LostConnection, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                raise _map_error(e, self.path) from e
            await self._record(inserted)
        return out[0]

    async def _append_txn(
        self,
        conn: asyncpg.Connection,
        events: Sequence[Event],
        blobs: Sequence[bytes | str],
        cache: Sequence[CacheEntry],
    ) -> tuple[list[Event], list[Event]]:
        async with conn.transaction():
            runs = sorted({e.run_id for e in events})
            if runs:  # in one order (by key) for every transaction: no deadlocks
                keys = sorted(_lock_key("run:" + r) for r in runs)
                await conn.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k", keys)
            existing: dict[str, Event] = {}
            heads: dict[str, str | None] = dict.fromkeys(runs)
            if events:
                ids = list(dict.fromkeys(e.id for e in events))
                for row in await conn.fetch(_EXISTING_AND_HEADS, ids, runs):
                    if row[0] == 0:
                        existing[row[2]] = _row_to_event(row[1:])
                    else:
                        heads[row[3]] = row[10]
            # Plan now (conflicts raise before anything is written), numbering from 1; the
            # real sequence numbers are set under the log-head row lock below (hashes do not
            # cover seq).
            inserts, out = plan_append(events, existing, heads.__getitem__, 1)
            new_blobs = blob_rows(blobs)
            if new_blobs:
                await conn.execute(
                    "INSERT INTO stop_blobs (hash, data) SELECT * FROM unnest($1::text[], $2::bytea[])"
                    " ON CONFLICT (hash) DO NOTHING",
                    [h for h, _ in new_blobs],
                    [d for _, d in new_blobs],
                )
            if cache:
                await self._put_cache(conn, cache)
            if not inserts:
                return out, []
            # The row lock is held to COMMIT, so sequence numbers become visible in order; a
            # waiting UPDATE re-reads the row as the previous holder committed it.
            last = int(await conn.fetchval("UPDATE stop_log_head SET seq = seq + $1 RETURNING seq - $1", len(inserts)))
            for ev in inserts:  # fresh objects of this call, not yet seen by anyone
                ev.__dict__["seq"] += last
            await conn.execute(_INSERT_AND_NOTIFY, *_columns(inserts), _CHANNEL, str(inserts[-1].seq))
        return out, inserts

    async def _put_cache(self, conn: asyncpg.Connection, cache: Sequence[CacheEntry]) -> None:
        keys = list(dict.fromkeys(c.key for c in cache))
        rows = await conn.fetch("SELECT key, value FROM stop_lm_cache WHERE key = ANY($1::text[])", keys)
        new = check_cache(cache, {r[0]: json.loads(r[1]) for r in rows})
        if not new:
            return
        written = await conn.fetch(
            "INSERT INTO stop_lm_cache (key, value) SELECT * FROM unnest($1::text[], $2::text[])"
            " ON CONFLICT (key) DO NOTHING RETURNING key",
            [c.key for c in new],
            [canonical_json(c.value) for c in new],
        )
        lost = [c for c in new if c.key not in {r[0] for r in written}]
        if lost:  # another machine wrote these keys meanwhile: theirs must equal ours
            rows = await conn.fetch(
                "SELECT key, value FROM stop_lm_cache WHERE key = ANY($1::text[])", [c.key for c in lost]
            )
            check_cache(lost, {r[0]: json.loads(r[1]) for r in rows})

    async def put_blob(self, data: bytes | str) -> str:
        raw = blob_bytes(data)
        await self.append([], blobs=[raw])
        return sha256_hex(raw)

    async def cache_put(self, key: str, value: dict[str, Any]) -> None:
        await self.append([], cache=[CacheEntry(key, value)])

    # ---- reading -------------------------------------------------------------------------
    async def _fetch(self, sql: str, *params: Any) -> list[Any]:
        try:
            async for attempt in _retrying():
                with attempt:
                    async with self._pool.acquire() as conn:
                        self.db_calls += 1
                        try:
                            return list(await conn.fetch(sql, *params))
                        except (asyncpg.InterfaceError, asyncpg.InternalClientError) as e:
                            if conn.is_closed():
                                raise _LostConnection(str(e)) from e
                            raise
        except (OSError, _LostConnection, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise _map_error(e, self.path) from e
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def read(
        self,
        run_id: str | None = None,
        *,
        after: int = 0,
        limit: int | None = None,
        types: Collection[str] | None = None,
    ) -> list[Event]:
        return await self._read_below(run_id, after=after, below=None, limit=limit, types=types)

    async def _read_below(
        self,
        run_id: str | None,
        *,
        after: int,
        below: int | None,
        limit: int | None,
        types: Collection[str] | None,
    ) -> list[Event]:
        sql, params = _select_sql(run_id, after, below, limit, types)
        return [_row_to_event(r) for r in await self._fetch(sql, *params)]

    async def get(self, event_id: str) -> Event | None:
        held = self._tail.get(event_id)
        if held is not None:
            return held
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM stop_events WHERE id = $1", event_id)
        return _row_to_event(rows[0]) if rows else None

    async def head(self, run_id: str) -> Event | None:
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM stop_events WHERE run_id = $1 ORDER BY seq DESC LIMIT 1", run_id
        )
        return _row_to_event(rows[0]) if rows else None

    async def children(self, causation_id: str, types: Collection[str] | None = None) -> list[Event]:
        sql = f"SELECT {_COLUMNS} FROM stop_events WHERE causation_id = $1"
        params: list[Any] = [causation_id]
        if types is not None:
            params.append(sorted(types))
            sql += " AND type = ANY($2::text[])"
        return [_row_to_event(r) for r in await self._fetch(sql + " ORDER BY seq", *params)]

    async def last_seq(self) -> int:
        return int((await self._fetch("SELECT COALESCE(MAX(seq), 0) FROM stop_events"))[0][0])

    async def run_ids(self) -> list[str]:
        rows = await self._fetch("SELECT run_id FROM stop_events GROUP BY run_id ORDER BY MIN(seq)")
        return [r[0] for r in rows]

    def subscribe(
        self,
        run_id: str | None = None,
        *,
        after: int = 0,
        types: Collection[str] | None = None,
    ) -> AsyncIterator[Event]:
        """New events in log order; wakes on NOTIFY from any machine, polls as a fallback."""
        return follow(
            self._tail, self._read_below, self._poll, run_id=run_id, after=after, types=types, poll_s=self._poll_s
        )

    async def get_blob(self, digest: str) -> bytes:
        rows = await self._fetch("SELECT data FROM stop_blobs WHERE hash = $1", digest)
        if not rows:
            raise StoreError(f"no blob {digest} in {self.path}")
        data = bytes(rows[0][0])
        if sha256_hex(data) != digest:
            raise CorruptBlob(f"blob {digest} in {self.path} does not match its hash (tampered?)")
        return data

    async def blob_digests(self) -> list[str]:
        return [r[0] for r in await self._fetch("SELECT hash FROM stop_blobs ORDER BY hash")]

    async def cache_get(self, key: str) -> dict[str, Any] | None:
        rows = await self._fetch("SELECT value FROM stop_lm_cache WHERE key = $1", key)
        return json.loads(rows[0][0]) if rows else None

    async def cache_rows(self) -> list[CacheEntry]:
        """Every LM cache row, by key (what ``stop store copy`` moves)."""
        rows = await self._fetch("SELECT key, value FROM stop_lm_cache ORDER BY key")
        return [CacheEntry(r[0], json.loads(r[1])) for r in rows]

    # ---- leases (agents.claims) ------------------------------------------------------------
    async def clock(self) -> float:
        """The database server's time in Unix seconds: the one clock every machine shares."""
        return float((await self._fetch(f"SELECT {_NOW}"))[0][0])

    async def lease_renew(self, work: Event, attempt: int, worker: str, host: str, lease_s: float) -> float:
        """Extend ``worker``'s lease on ``work`` to the database's now + ``lease_s``; return it."""
        rows = await self._fetch(
            f"INSERT INTO stop_leases AS l (work_id, attempt, run_id, worker, host, expires_at, renewed_at)"
            f" VALUES ($1, $2, $3, $4, $5, {_NOW} + $6, {_NOW})"
            " ON CONFLICT (work_id, attempt) DO UPDATE SET expires_at = EXCLUDED.expires_at,"
            " renewed_at = EXCLUDED.renewed_at WHERE l.worker = EXCLUDED.worker RETURNING expires_at",
            work.id,
            attempt,
            work.run_id,
            worker,
            host,
            float(lease_s),
        )
        return float(rows[0][0]) if rows else 0.0

    async def lease_expiry(self, work_id: str, attempt: int) -> float | None:
        """The latest renewal's expiry of (work, attempt), if it was ever renewed here."""
        rows = await self._fetch(
            "SELECT expires_at FROM stop_leases WHERE work_id = $1 AND attempt = $2", work_id, attempt
        )
        return float(rows[0][0]) if rows else None

    async def worker_seen(self, worker: str, agent: str, host: str, pid: int) -> None:
        await self._fetch(
            f"INSERT INTO stop_workers AS w (worker, agent, host, pid, first_seen, last_seen)"
            f" VALUES ($1, $2, $3, $4, {_NOW}, {_NOW})"
            " ON CONFLICT (worker) DO UPDATE SET last_seen = EXCLUDED.last_seen",
            worker,
            agent,
            host,
            pid,
        )

    async def workers(self) -> list[dict[str, Any]]:
        """Workers seen, newest first, each with its live leases (by the database's clock)."""
        now = await self.clock()
        seen = await self._fetch(
            "SELECT worker, agent, host, pid, first_seen, last_seen FROM stop_workers ORDER BY last_seen DESC"
        )
        leases = await self._fetch(
            "SELECT worker, work_id, attempt, run_id, expires_at FROM stop_leases WHERE expires_at > $1"
            " ORDER BY expires_at",
            now,
        )
        out = []
        for w in seen:
            mine = [
                {"work_id": r[1], "attempt": r[2], "run_id": r[3], "expires_in_s": round(r[4] - now, 1)}
                for r in leases
                if r[0] == w[0]
            ]
            out.append(
                {
                    "worker": w[0],
                    "agent": w[1],
                    "host": w[2],
                    "pid": w[3],
                    "first_seen": w[4],
                    "last_seen_s_ago": round(now - w[5], 1),
                    "live_leases": mine,
                }
            )
        return out
