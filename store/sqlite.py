"""SQLite event store: WAL, one connection per store owned by one worker thread at a time.

Every database call (a read, or a whole append transaction) is one synchronous function run in a
worker thread through a capacity limiter of one. A cancelled task therefore never leaves a
transaction open or half rolled back: the thread call cannot be interrupted (the task waits for
it, then sees its cancellation), and a transaction begins, commits or rolls back inside one call.

Appends run in ``BEGIN IMMEDIATE`` transactions, so sequence numbers and per-run chain heads are
assigned while this process holds the file's write lock: several processes can append to one
file and the order on disk is a total order consistent with every run's chain. Nothing here ever
updates or deletes an event row.

``SqliteStore.open(path, readonly=True)`` opens an existing store for reading only (SQLite
``mode=ro``): it never creates, converts or writes anything, works in a read-only folder, and
refuses a missing or empty file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

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
#: How long one thread call waits for another process's write lock. Short, because the call
#: cannot be cancelled while it waits; longer waits are retries, which can be.
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


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite already rolled back (e.g. after SQLITE_FULL)
            pass


def _head_hash(conn: sqlite3.Connection, run_id: str) -> str | None:
    row = conn.execute("SELECT hash FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)).fetchone()
    return row[0] if row else None


def _cache_row(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT value FROM lm_cache WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def _append_txn(
    conn: sqlite3.Connection,
    events: Sequence[Event],
    blobs: Sequence[bytes | str],
    cache: Sequence[CacheEntry],
    check_existing: bool,
) -> tuple[list[Event], int]:
    """The body of one append transaction (the caller began it and commits it).

    Without ``check_existing`` it is optimistic: the UNIQUE index on ids raises IntegrityError
    if any event exists, and the caller retries with the check."""
    existing: dict[str, Event] = {}
    ids = list(dict.fromkeys(e.id for e in events)) if check_existing else []
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        rows = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        existing.update((r[1], _row_to_event(r)) for r in rows)
    heads = {run_id: _head_hash(conn, run_id) for run_id in dict.fromkeys(e.run_id for e in events)}
    last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    inserts, out = plan_append(events, existing, heads.__getitem__, last + 1)
    if inserts:
        conn.executemany(_INSERT, [_event_row(e) for e in inserts])
    new_blobs = blob_rows(blobs)
    if new_blobs:
        conn.executemany("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", new_blobs)
    if cache:
        prior = {e.key: got for e in cache if (got := _cache_row(conn, e.key)) is not None}
        new = check_cache(cache, prior)
        if new:
            conn.executemany(
                "INSERT INTO lm_cache (key, value) VALUES (?, ?)", [(c.key, canonical_json(c.value)) for c in new]
            )
    return out, len(inserts)


def _in_txn(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
    """``body`` inside BEGIN IMMEDIATE ... COMMIT; any failure rolls the whole of it back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return result


def _append_sync(
    conn: sqlite3.Connection,
    events: Sequence[Event],
    blobs: Sequence[bytes | str],
    cache: Sequence[CacheEntry],
) -> tuple[list[Event], int]:
    try:
        return _in_txn(conn, lambda: _append_txn(conn, events, blobs, cache, False))
    except sqlite3.IntegrityError:
        # Some id already exists (a re-append, e.g. on resume): redo the transaction
        # comparing each event with what is stored.
        return _in_txn(conn, lambda: _append_txn(conn, events, blobs, cache, True))


def _ro_uri(path: str, *, immutable: bool) -> str:
    return Path(path).resolve().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")


class SqliteStore:
    """Use ``await SqliteStore.open(path)`` (or ``open_store``); close with ``aclose``."""

    def __init__(self, conn: sqlite3.Connection, path: str, *, poll_seconds: float, readonly: bool = False) -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly
        #: One thread at a time owns the connection: every call goes through this limiter.
        self._owner = anyio.CapacityLimiter(1)
        self._appended = anyio.Event()
        self._poll = poll_seconds
        self._closed = False

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in the connection's thread; not interruptible once started."""
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        return await anyio.to_thread.run_sync(fn, self._conn, *args, limiter=self._owner)

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
        if readonly:
            conn = await anyio.to_thread.run_sync(cls._connect_ro, spath)
        else:
            try:
                conn = await anyio.to_thread.run_sync(
                    lambda: sqlite3.connect(spath, isolation_level=None, check_same_thread=False)
                )
            except sqlite3.Error as e:
                raise map_sqlite_error(e, spath) from e
        store = cls(conn, spath, poll_seconds=poll_seconds, readonly=readonly)
        try:
            await anyio.to_thread.run_sync(store._setup, synchronous, limiter=store._owner)
        except BaseException:
            conn.close()
            raise
        return store

    @staticmethod
    def _connect_ro(path: str) -> sqlite3.Connection:
        """A read-only connection. A WAL store in a read-only folder whose WAL is gone (closed
        cleanly) cannot get its shared-memory file; it is then complete in the main file and
        nothing can write to it, so it is opened as immutable."""
        try:
            conn = sqlite3.connect(_ro_uri(path, immutable=False), uri=True, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError as e:
            if os.path.exists(path + "-wal") or "unable to open" not in str(e):
                raise map_sqlite_error(e, path) from e
        except sqlite3.Error as e:
            raise map_sqlite_error(e, path) from e
        try:
            conn = sqlite3.connect(_ro_uri(path, immutable=True), uri=True, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.Error as e:
            raise map_sqlite_error(e, path) from e

    def _setup(self, synchronous: str) -> None:
        conn = self._conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:
                raise ForeignSchema(
                    f"{self.path} is a SQLite database of another program (tables: "
                    f"{', '.join(sorted(tables)[:5])}); refusing to touch it"
                )
            if tables:
                meta: dict[str, str] = dict(conn.execute("SELECT key, value FROM meta").fetchall())
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
            if self.readonly:
                return
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("store.no_wal", path=self.path, journal_mode=mode)
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            if not tables:

                def create() -> None:
                    for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                        conn.execute(stmt)
                    conn.executemany(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                        [("schema", SCHEMA_NAME), ("schema_version", str(SCHEMA_VERSION))],
                    )

                _in_txn(conn, create)
        except sqlite3.Error as e:
            _rollback(conn)
            raise map_sqlite_error(e, self.path) from e

    async def aclose(self) -> None:
        if self._closed:
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._conn.close, limiter=self._owner)
        self._closed = True

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- writing -------------------------------------------------------------------------
    def _refuse_if_readonly(self) -> None:
        if self.readonly:
            raise StoreReadOnly(f"store {self.path} was opened read-only; nothing was written")

    async def _write(self, fn: Callable[..., T], *args: Any, run_id: str | None = None) -> T:
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
        out, inserted = await self._write(_append_sync, list(events), list(blobs), list(cache), run_id=run_id)
        if inserted:
            self._appended.set()
            self._appended = anyio.Event()
        return out

    async def start_run(self, prefix: str, make_root: Callable[[str], Event]) -> Event:
        """Allocate the next free run id ``PREFIX-N`` and append its first event, atomically:
        two processes starting runs of the same prefix get different ids."""

        def txn(conn: sqlite3.Connection) -> tuple[list[Event], int]:
            def body() -> tuple[list[Event], int]:
                like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%"
                taken = [
                    r[0]
                    for r in conn.execute("SELECT DISTINCT run_id FROM events WHERE run_id LIKE ? ESCAPE '\\'", (like,))
                ]
                root = make_root(next_run_id(prefix, taken))
                return _append_txn(conn, [root], (), (), True)

            return _in_txn(conn, body)

        out, inserted = await self._write(txn, run_id=prefix)
        if inserted:
            self._appended.set()
            self._appended = anyio.Event()
        return out[0]

    async def put_blob(self, data: bytes | str) -> str:
        raw = blob_bytes(data)
        await self.append([], blobs=[raw])
        return sha256_hex(raw)

    async def cache_put(self, key: str, value: dict[str, Any]) -> None:
        await self.append([], cache=[CacheEntry(key, value)])

    # ---- reading -------------------------------------------------------------------------
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return await self._call(lambda conn: conn.execute(sql, params).fetchall())
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
        where = ["seq > ?"]
        params: list[Any] = [after]
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
        return [_row_to_event(r) for r in await self._fetch(sql, params)]

    async def get(self, event_id: str) -> Event | None:
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
        return [_row_to_event(r) for r in await self._fetch(sql + " ORDER BY seq", params)]

    async def last_seq(self) -> int:
        return int((await self._fetch("SELECT COALESCE(MAX(seq), 0) FROM events"))[0][0])

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
            self.read, self.last_seq, lambda: self._appended, run_id=run_id, after=after, types=types, poll_s=self._poll
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
        try:
            return await self._call(_cache_row, key)
        except sqlite3.Error as e:
            raise map_sqlite_error(e, self.path) from e

    async def cache_rows(self) -> list[CacheEntry]:
        """Every LM cache row, by key (for the audit)."""
        rows = await self._fetch("SELECT key, value FROM lm_cache ORDER BY key")
        return [CacheEntry(k, json.loads(v)) for k, v in rows]

    async def integrity_check(self) -> str:
        rows = await self._fetch("PRAGMA quick_check")
        return str(rows[0][0]) if rows else "unknown"
