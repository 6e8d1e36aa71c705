"""SQLite event store on aiosqlite: WAL, one connection per store with one owner at a time.

The connection is an ``aiosqlite.Connection`` (its own thread runs every statement). Every
database step (a read, or a whole append transaction from ``BEGIN IMMEDIATE`` to ``COMMIT`` or
``ROLLBACK``) holds the store's lock (one owner of the connection) inside a shielded cancel
scope. aiosqlite runs a statement to the end even when the awaiting task is cancelled, so an
unshielded transaction could be left open (the next one then fails with "cannot start a
transaction within a transaction") or be rolled back while another task's statements run on the
same connection. Shielded, a cancelled task finishes its step first, then sees its cancellation;
the waits that can be long (for the lock, and between busy retries) stay cancellable, and each
statement waits at most ``_BUSY_TIMEOUT_MS`` for another process's write lock.

Appends run in ``BEGIN IMMEDIATE`` transactions, so sequence numbers and per-run chain heads are
assigned while this process holds the file's write lock: several processes can append to one
file and the order on disk is a total order consistent with every run's chain. Nothing here ever
updates or deletes an event row. What a transaction writes is planned by pure functions
(``store.planning``); only the statements go through aiosqlite.

``SqliteStore.open(path, readonly=True)`` opens an existing store for reading only (SQLite
``mode=ro``): it never creates, converts or writes anything, works in a read-only folder, and
refuses a missing or empty file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiosqlite
import anyio
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from events.codec import canonical_json, sha256_hex
from events.model import Event, stored_event
from store.base import CacheEntry, blob_bytes
from store.errors import (
    CorruptBlob,
    ForeignSchema,
    SchemaTooNew,
    StoreError,
    StoreNotFound,
    StoreReadOnly,
    _WriteFailed,
    is_busy,
    map_sqlite_error,
)
from store.follow import follow
from store.planning import blob_rows, check_cache, next_run_id, plan_append
from store.tail import DEFAULT_CAPACITY, POLL_PAGE, Tail

__all__ = ("SCHEMA_NAME", "SCHEMA_VERSION", "SqliteStore")

log = structlog.get_logger("store")

SCHEMA_NAME = "stop-event-log"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
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
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, seq);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, seq);
CREATE INDEX IF NOT EXISTS events_by_cause ON events (causation_id, seq);
CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS lm_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = "seq, id, run_id, type, version, causation_id, key, payload, prev_hash, hash"
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
_POLL_SECONDS = 0.05
_CHUNK = 500
#: Batches up to this size are checked for children before their causes (``Tail.children``);
#: larger ones (copies, imports) skip the check: their events' children come from the database.
_PROVE_MAX = 64
#: How long one statement waits for another process's write lock. Short, because a transaction
#: is shielded from cancellation while it waits; longer waits are retries, which can be cancelled.
_BUSY_TIMEOUT_MS = 1000

T = TypeVar("T")


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


def _as_read(inserted: Event) -> Event:
    """A row an append inserted, built as a read of it builds it (for the tail)."""
    return _row_to_event(_event_row(inserted))


def _select_sql(
    run_id: str | None, after: int, below: int | None, limit: int | None, types: Collection[str] | None
) -> tuple[str, list[Any]]:
    where = ["seq > ?"]
    params: list[Any] = [after]
    if below is not None:
        where.append("seq < ?")
        params.append(below)
    if run_id is not None:
        where.append("run_id = ?")
        params.append(run_id)
    if types is not None:
        tlist = sorted(types)
        where.append(f"type IN ({','.join('?' * len(tlist))})")
        params.extend(tlist)
    sql = f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, params


def _event_row(ev: Event) -> tuple[Any, ...]:
    return (
        ev.seq,
        ev.id,
        ev.run_id,
        ev.type,
        ev.version,
        ev.causation_id,
        ev.key,
        ev.payload_json,
        ev.prev_hash,
        ev.hash,
    )


Conn = aiosqlite.Connection


async def _rows(conn: Conn, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return list(await conn.execute_fetchall(sql, params))


async def _rollback(conn: Conn) -> None:
    if conn.in_transaction:
        try:
            await conn.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite already rolled back (e.g. after SQLITE_FULL)
            pass


async def _head_hash(conn: Conn, run_id: str) -> str | None:
    rows = await _rows(conn, "SELECT hash FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,))
    return rows[0][0] if rows else None


async def _cache_values(conn: Conn, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored LM cache records among ``keys``."""
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(keys))
    for i in range(0, len(unique), _CHUNK):
        chunk = unique[i : i + _CHUNK]
        sql = f"SELECT key, value FROM lm_cache WHERE key IN ({','.join('?' * len(chunk))})"
        found.update((k, json.loads(v)) for k, v in await _rows(conn, sql, chunk))
    return found


class Appended(NamedTuple):
    """What one append transaction did: the stored event for each input, the rows it inserted,
    and the inserted ids that had no child in the log before them (for ``Tail.children``)."""

    out: list[Event]
    inserts: list[Event]
    childless: set[str]


async def _head_and_parents(conn: Conn, ids: Sequence[str]) -> tuple[int, set[str]]:
    """The last seq, and which of ``ids`` some stored event names as its cause, in one step."""
    if not ids or len(ids) > _PROVE_MAX:  # a bulk append: none is proven childless
        return (await _rows(conn, "SELECT COALESCE(MAX(seq), 0) FROM events"))[0][0], set(ids)
    sql = (
        "SELECT COALESCE(MAX(seq), 0), NULL FROM events UNION ALL SELECT DISTINCT NULL, causation_id"
        f" FROM events WHERE causation_id IN ({','.join('?' * len(ids))})"
    )
    rows = await _rows(conn, sql, ids)
    return next(r[0] for r in rows if r[1] is None), {r[1] for r in rows if r[1] is not None}


async def _append_txn(
    conn: Conn,
    events: Sequence[Event],
    blobs: Sequence[bytes | str],
    cache: Sequence[CacheEntry],
    check_existing: bool,
) -> Appended:
    """The body of one append transaction (the caller began it and commits it).

    Without ``check_existing`` it is optimistic: the UNIQUE index on ids raises IntegrityError
    if any event exists, and the caller retries with the check. The rows are planned by the
    pure ``plan_append``/``blob_rows``/``check_cache``; only the statements run here. The
    statement reading the last seq also asks which of the batch's ids already have children
    (none should: an effect is appended after its cause), at no extra trip."""
    existing: dict[str, Event] = {}
    ids = list(dict.fromkeys(e.id for e in events)) if check_existing else []
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        rows = await _rows(conn, f"SELECT {_COLUMNS} FROM events WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        existing.update((r[1], _row_to_event(r)) for r in rows)
    heads = {run_id: await _head_hash(conn, run_id) for run_id in dict.fromkeys(e.run_id for e in events)}
    last, parents = await _head_and_parents(conn, list(dict.fromkeys(e.id for e in events))) if events else (0, set())
    inserts, out = plan_append(events, existing, heads.__getitem__, last + 1)
    if inserts:
        await conn.executemany(_INSERT, [_event_row(e) for e in inserts])
    new_blobs = blob_rows(blobs)
    if new_blobs:
        await conn.executemany("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", new_blobs)
    if cache:
        new = check_cache(cache, await _cache_values(conn, [e.key for e in cache]))
        if new:
            await conn.executemany(
                "INSERT INTO lm_cache (key, value) VALUES (?, ?)", [(c.key, canonical_json(c.value)) for c in new]
            )
    return Appended(out, inserts, {e.id for e in inserts} - parents)


async def _in_txn(conn: Conn, body: Callable[[], Awaitable[T]]) -> T:
    """``body`` inside BEGIN IMMEDIATE ... COMMIT; any failure rolls the whole of it back.

    Call it only while owning the connection, shielded (``SqliteStore._owned``)."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        result = await body()
        await conn.execute("COMMIT")
    except BaseException:
        await _rollback(conn)
        raise
    return result


async def _append(
    conn: Conn,
    events: Sequence[Event],
    blobs: Sequence[bytes | str],
    cache: Sequence[CacheEntry],
) -> Appended:
    try:
        return await _in_txn(conn, lambda: _append_txn(conn, events, blobs, cache, False))
    except sqlite3.IntegrityError:
        # Some id already exists (a re-append, e.g. on resume): redo the transaction
        # comparing each event with what is stored.
        return await _in_txn(conn, lambda: _append_txn(conn, events, blobs, cache, True))


def _ro_uri(path: str, *, immutable: bool) -> str:
    return Path(path).resolve().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")


def _connect_rw(path: str) -> sqlite3.Connection:
    try:
        return sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise map_sqlite_error(e, path) from e


def _probe(uri: str) -> sqlite3.Connection:
    """A connection to ``uri`` that has read the schema (so a bad file fails here, not later)."""
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_ro(path: str) -> sqlite3.Connection:
    """A read-only connection. A WAL store in a read-only folder whose WAL is gone (closed
    cleanly) cannot get its shared-memory file; it is then complete in the main file and
    nothing can write to it, so it is opened as immutable."""
    try:
        return _probe(_ro_uri(path, immutable=False))
    except sqlite3.OperationalError as e:
        if os.path.exists(path + "-wal") or "unable to open" not in str(e):
            raise map_sqlite_error(e, path) from e
    except sqlite3.Error as e:
        raise map_sqlite_error(e, path) from e
    try:
        return _probe(_ro_uri(path, immutable=True))
    except sqlite3.Error as e:
        raise map_sqlite_error(e, path) from e


async def _adopt(raw: sqlite3.Connection) -> Conn:
    """An aiosqlite connection around an already opened sqlite3 one.

    Opening happens first, in a plain worker thread, because a failed ``aiosqlite.connect``
    leaves its thread finishing on its own: if the program then exits, that thread reports
    "Event loop is closed". Handing aiosqlite a connection that is already open means its
    start-up cannot fail, and every aiosqlite connection made here is closed by ``aclose``."""
    with anyio.CancelScope(shield=True):
        conn = await aiosqlite.Connection(lambda: raw, iter_chunk_size=64)
    return conn


class SqliteStore:
    """Use ``await SqliteStore.open(path)`` (or ``open_store``); close with ``aclose``."""

    def __init__(
        self,
        conn: Conn,
        path: str,
        *,
        poll_seconds: float,
        readonly: bool = False,
        tail_capacity: int = DEFAULT_CAPACITY,
        raw: sqlite3.Connection | None = None,
    ) -> None:
        self._conn = conn
        #: The sqlite3 connection inside ``conn``, for ``PRAGMA data_version`` only (see
        #: ``_data_version``); None: the tail never answers ``children``/``last_seq``.
        self._raw = raw
        self.path = path
        self.readonly = readonly
        #: The connection's one owner at a time: every database step holds this lock.
        self._owner = anyio.Lock()
        self._poll_s = poll_seconds
        self._closed = False
        #: The newest committed events, shared by every subscriber (see ``store.tail``); only
        #: changed while owning the connection, so in the order this process saw commits.
        self._tail = Tail(tail_capacity, as_read=_as_read)
        #: ``data_version`` when the tail was last known to end at the log's head: while it
        #: is unchanged no other connection has committed, so the tail is the log's end.
        self._synced: int | None = None
        #: Database steps taken (each a trip to the connection's thread), for the benchmarks.
        self.db_calls = 0

    def _data_version(self) -> int | None:
        """SQLite's count of commits by *other* connections (this one's own do not change it).

        Run here, on the event loop's thread: a few microseconds, where a statement through
        aiosqlite is a trip to its thread and back. Call it only while no statement runs on
        the connection: while owning it between statements, or while nobody owns it."""
        if self._raw is None:
            return None
        try:
            return int(self._raw.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None

    def _tail_is_head(self) -> bool:
        """Whether the tail provably ends at the log's head (no other connection has committed
        since it last did). Call it only while owning the connection, between statements."""
        return self._synced is not None and self._data_version() == self._synced

    async def _tail_or_db(
        self, from_tail: Callable[[], T | None], sql: str, params: Sequence[Any]
    ) -> tuple[T | None, list[Any]]:
        """``(from_tail(), [])`` if the tail can answer for the log (it ends at the head, and
        the answer is not None), else ``(None, rows of sql)``: one ownership of the
        connection, with a trip to its thread only when the tail cannot answer."""
        try:
            async with self._owned() as conn:
                if self._tail_is_head():
                    found = from_tail()
                    if found is not None:
                        return found, []
                self.db_calls += 1
                return None, await _rows(conn, sql, params)
        except sqlite3.Error as e:
            raise map_sqlite_error(e, self.path) from e

    @asynccontextmanager
    async def _owned(self) -> AsyncIterator[Conn]:
        """The connection, held alone and shielded from cancellation until the block ends.

        Waiting for the lock can be cancelled; a step that has begun runs to its end (a
        transaction commits or rolls back whole), and a cancellation is seen after it."""
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        async with self._owner:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            with anyio.CancelScope(shield=True):
                yield self._conn

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(conn, *args)`` as one uncancellable step of the connection's one owner."""
        async with self._owned() as conn:
            self.db_calls += 1
            return await fn(conn, *args)

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        readonly: bool = False,
        synchronous: str = "FULL",
        poll_seconds: float = _POLL_SECONDS,
        tail_capacity: int = DEFAULT_CAPACITY,
    ) -> SqliteStore:
        """Open (by default creating) a store; ``readonly=True`` opens an existing one for reads."""
        p = anyio.Path(path)
        spath = str(p)
        if not await p.exists():
            if readonly or not create:
                raise StoreNotFound(f"no store at {spath} (run a command that records a run first)")
            try:
                await p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreReadOnly(f"cannot create the folder of store {spath}: {e.strerror}") from e
        elif await p.is_dir():
            raise StoreError(f"{spath} is a directory, not a store file")
        elif readonly and (await p.stat()).st_size == 0:
            raise StoreNotFound(f"{spath} is an empty file (0 bytes), not a STOP store")
        # Shielded: a cancellation while opening must not leak an open connection (its thread
        # would keep the process alive); it is seen by the caller right after.
        with anyio.CancelScope(shield=True):
            raw = await anyio.to_thread.run_sync(_connect_ro if readonly else _connect_rw, spath)
            store = cls(
                await _adopt(raw),
                spath,
                poll_seconds=poll_seconds,
                readonly=readonly,
                tail_capacity=tail_capacity,
                raw=raw,
            )
            try:
                await store._call(store._setup, synchronous)
            except BaseException:
                await store.aclose()
                raise
        return store

    async def _setup(self, conn: Conn, synchronous: str) -> None:
        try:
            await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            tables = {r[0] for r in await _rows(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:
                raise ForeignSchema(
                    f"{self.path} is a SQLite database of another program (tables: "
                    f"{', '.join(sorted(tables)[:5])}); refusing to touch it"
                )
            if tables:
                meta: dict[str, str] = dict(await _rows(conn, "SELECT key, value FROM meta"))
                if meta.get("schema") != SCHEMA_NAME:
                    raise ForeignSchema(f"{self.path} holds schema {meta.get('schema')!r}, not {SCHEMA_NAME!r}")
                version = int(meta.get("schema_version", "0"))
                if version > SCHEMA_VERSION:
                    raise SchemaTooNew(
                        f"{self.path} was written by a newer STOP (schema {version}, this code reads"
                        f" up to {SCHEMA_VERSION}); upgrade the code to open it"
                    )
            elif self.readonly:
                raise StoreNotFound(f"{self.path} holds no STOP store (an empty SQLite database)")
            if tables:
                seen = self._data_version()
                self._tail.reset((await _rows(conn, "SELECT COALESCE(MAX(seq), 0) FROM events"))[0][0])
                self._synced = seen
            if self.readonly:
                return
            mode = (await _rows(conn, "PRAGMA journal_mode = WAL"))[0][0]
            if mode.lower() != "wal":
                log.warning("store.no_wal", path=self.path, journal_mode=mode)
            await conn.execute(f"PRAGMA synchronous = {synchronous}")
            if not tables:

                async def create() -> None:
                    for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                        await conn.execute(stmt)
                    await conn.executemany(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                        [("schema", SCHEMA_NAME), ("schema_version", str(SCHEMA_VERSION))],
                    )

                await _in_txn(conn, create)
        except sqlite3.Error as e:
            await _rollback(conn)
            raise map_sqlite_error(e, self.path) from e

    async def aclose(self) -> None:
        """Close the connection and stop its thread (shielded: a cancelled caller still closes)."""
        with anyio.CancelScope(shield=True):
            async with self._owner:
                if self._closed:
                    return
                self._closed = True
                await self._conn.close()

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- writing -------------------------------------------------------------------------
    def _refuse_if_readonly(self) -> None:
        if self.readonly:
            raise StoreReadOnly(f"store {self.path} was opened read-only; nothing was written")

    async def _write(self, fn: Callable[..., Awaitable[T]], *args: Any, run_id: str | None = None) -> T:
        """One write transaction with bounded, jittered retries while another process holds the lock."""
        self._refuse_if_readonly()
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_busy),
            wait=wait_random_exponential(multiplier=0.02, max=1.0),
            stop=stop_after_attempt(30),
            reraise=True,
        ):
            with attempt:
                try:
                    return await self._call(fn, *args)
                except sqlite3.Error as e:
                    if is_busy(e):
                        raise
                    err = map_sqlite_error(e, self.path)
                    if isinstance(err, _WriteFailed) and run_id is not None:
                        err.for_run(run_id)
                    raise err from e
        raise AssertionError("unreachable")  # pragma: no cover

    async def append(
        self,
        events: Sequence[Event],
        *,
        blobs: Sequence[bytes | str] = (),
        cache: Sequence[CacheEntry] = (),
    ) -> list[Event]:
        run_id = events[0].run_id if events else None
        batch, blob_list, cache_list = list(events), list(blobs), list(cache)

        async def txn(conn: Conn) -> list[Event]:
            version = self._data_version()
            done = await _append(conn, batch, blob_list, cache_list)
            await self._record(conn, done, version)
            return done.out

        return await self._write(txn, run_id=run_id)

    async def _record(self, conn: Conn, done: Appended, version: int | None) -> None:
        """Put what an append just committed into the tail (still owning the connection, so
        tail updates follow commit order; a gap left by another process is read here).
        ``version`` is the ``data_version`` read before the transaction began: the tail now
        ends at the head the transaction saw, which includes every commit before it."""

        async def fill(after: int, below: int) -> list[Event]:
            sql, params = _select_sql(None, after, below, None, None)
            return [_row_to_event(r) for r in await _rows(conn, sql, params)]

        if done.inserts:
            await self._tail.record(done.inserts, fill, done.childless)
            self._synced = version

    async def start_run(self, prefix: str, make_root: Callable[[str], Event]) -> Event:
        """Allocate the next free run id ``PREFIX-N`` and append its first event, atomically:
        two processes starting runs of the same prefix get different ids."""

        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%"

        async def txn(conn: Conn) -> list[Event]:
            async def body() -> Appended:
                sql = "SELECT DISTINCT run_id FROM events WHERE run_id LIKE ? ESCAPE '\\'"
                taken = [r[0] for r in await _rows(conn, sql, (like,))]
                root = make_root(next_run_id(prefix, taken))
                return await _append_txn(conn, [root], (), (), True)

            version = self._data_version()
            done = await _in_txn(conn, body)
            await self._record(conn, done, version)
            return done.out

        return (await self._write(txn, run_id=prefix))[0]

    async def put_blob(self, data: bytes | str) -> str:
        raw = blob_bytes(data)
        await self.append([], blobs=[raw])
        return sha256_hex(raw)

    async def cache_put(self, key: str, value: dict[str, Any]) -> None:
        await self.append([], cache=[CacheEntry(key, value)])

    # ---- reading -------------------------------------------------------------------------
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return await self._call(_rows, sql, params)
        except sqlite3.Error as e:
            raise map_sqlite_error(e, self.path) from e

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
        return [_row_to_event(r) for r in await self._fetch(sql, params)]

    async def _poll(self, after: int) -> list[Event]:
        """A page of the log after ``after`` (the tail's poll for other processes' appends),
        put into the tail while still owning the connection."""
        sql, params = _select_sql(None, after, None, POLL_PAGE, None)

        async def step(conn: Conn) -> list[Event]:
            version = self._data_version()
            batch = [_row_to_event(r) for r in await _rows(conn, sql, params)]
            if self._tail.add(batch) and len(batch) < POLL_PAGE:
                self._synced = version  # everything committed before the read is in the tail
            return batch

        try:
            return await self._call(step)
        except sqlite3.Error as e:
            raise map_sqlite_error(e, self.path) from e

    async def get(self, event_id: str) -> Event | None:
        held = self._tail.get(event_id)
        if held is not None:
            return held
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event_id,))
        return _row_to_event(rows[0]) if rows else None

    async def head(self, run_id: str) -> Event | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,))
        return _row_to_event(rows[0]) if rows else None

    async def children(self, causation_id: str, types: Collection[str] | None = None) -> list[Event]:
        sql = f"SELECT {_COLUMNS} FROM events WHERE causation_id = ?"
        params: list[Any] = [causation_id]
        if types is not None:
            tlist = sorted(types)
            sql += f" AND type IN ({','.join('?' * len(tlist))})"
            params.extend(tlist)
        kids, rows = await self._tail_or_db(
            lambda: self._tail.children(causation_id, types), sql + " ORDER BY seq", params
        )
        return kids if kids is not None else [_row_to_event(r) for r in rows]

    async def last_seq(self) -> int:
        head, rows = await self._tail_or_db(lambda: self._tail.end, "SELECT COALESCE(MAX(seq), 0) FROM events", ())
        return head if head is not None else int(rows[0][0])

    async def run_ids(self) -> list[str]:
        rows = await self._fetch("SELECT run_id FROM events GROUP BY run_id ORDER BY MIN(seq)")
        return [r[0] for r in rows]

    def subscribe(
        self,
        run_id: str | None = None,
        *,
        after: int = 0,
        types: Collection[str] | None = None,
    ) -> AsyncIterator[Event]:
        """New events in log order; wakes at once on local appends, polls for other processes."""
        return follow(
            self._tail, self._read_below, self._poll, run_id=run_id, after=after, types=types, poll_s=self._poll_s
        )

    async def get_blob(self, digest: str) -> bytes:
        rows = await self._fetch("SELECT data FROM blobs WHERE hash = ?", (digest,))
        if not rows:
            raise StoreError(f"no blob {digest} in {self.path}")
        data = bytes(rows[0][0])
        if sha256_hex(data) != digest:
            raise CorruptBlob(f"blob {digest} in {self.path} does not match its hash (tampered?)")
        return data

    async def blob_digests(self) -> list[str]:
        return [r[0] for r in await self._fetch("SELECT hash FROM blobs ORDER BY hash")]

    async def cache_get(self, key: str) -> dict[str, Any] | None:
        rows = await self._fetch("SELECT value FROM lm_cache WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    async def cache_rows(self) -> list[CacheEntry]:
        """Every LM cache row, by key (for the audit)."""
        rows = await self._fetch("SELECT key, value FROM lm_cache ORDER BY key")
        return [CacheEntry(k, json.loads(v)) for k, v in rows]

    async def integrity_check(self) -> str:
        rows = await self._fetch("PRAGMA quick_check")
        return str(rows[0][0]) if rows else "unknown"
