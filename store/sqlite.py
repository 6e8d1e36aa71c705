"""SQLite event store on aiosqlite: WAL, one writer connection per process, busy retries.

Appends run in ``BEGIN IMMEDIATE`` transactions, so sequence numbers and per-run chain heads are
assigned while this process holds the file's write lock: several processes can append to one
file and the order on disk is a total order consistent with every run's chain. Nothing here ever
updates or deletes an event row.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import aiosqlite
import anyio
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from events.codec import canonical_json, sha256_hex
from events.model import Event
from store.base import CacheEntry, blob_bytes
from store.errors import (
    CorruptBlob,
    CorruptStore,
    ForeignSchema,
    SchemaTooNew,
    StoreError,
    StoreNotFound,
    is_busy,
    map_sqlite_error,
)
from store.follow import follow
from store.planning import blob_rows, check_cache, plan_append

__all__ = ("SCHEMA_NAME", "SCHEMA_VERSION", "SqliteStore", "open_store")

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


def _row_to_event(row: Sequence[Any]) -> Event:
    return Event(
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


class SqliteStore:
    """Use ``await SqliteStore.open(path)`` (or ``open_store``); close with ``aclose``."""

    def __init__(self, conn: aiosqlite.Connection, path: str, *, poll_seconds: float) -> None:
        self._conn = conn
        self.path = path
        self._write_lock = anyio.Lock()
        self._appended = anyio.Event()
        self._poll = poll_seconds

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        synchronous: str = "FULL",
        poll_seconds: float = _POLL_SECONDS,
    ) -> SqliteStore:
        p = anyio.Path(path)
        spath = str(p)
        if not await p.exists():
            if not create:
                raise StoreNotFound(f"no store at {spath} (run a command that records a run first)")
            await p.parent.mkdir(parents=True, exist_ok=True)
        elif await p.is_dir():
            raise StoreError(f"{spath} is a directory, not a store file")
        try:
            conn = await aiosqlite.connect(spath, isolation_level=None)
        except sqlite3.Error as e:
            raise map_sqlite_error(e, spath) from e
        store = cls(conn, spath, poll_seconds=poll_seconds)
        try:
            await store._setup(synchronous)
        except BaseException:
            await conn.close()
            raise
        return store

    async def _setup(self, synchronous: str) -> None:
        try:
            await self._conn.execute("PRAGMA busy_timeout = 10000")
            tables = {
                r[0] async for r in await self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if tables and "meta" not in tables:
                raise ForeignSchema(
                    f"{self.path} is a SQLite database of another program (tables: "
                    f"{', '.join(sorted(tables)[:5])}); refusing to touch it"
                )
            if tables:
                meta: dict[str, str] = {
                    k: v for k, v in await self._conn.execute_fetchall("SELECT key, value FROM meta")
                }
                if meta.get("schema") != SCHEMA_NAME:
                    raise ForeignSchema(f"{self.path} holds schema {meta.get('schema')!r}, not {SCHEMA_NAME!r}")
                version = int(meta.get("schema_version", "0"))
                if version > SCHEMA_VERSION:
                    raise SchemaTooNew(
                        f"{self.path} was written by a newer STOP (schema {version}, this code reads"
                        f" up to {SCHEMA_VERSION}); upgrade the code to open it"
                    )
            mode = next(iter(await self._conn.execute_fetchall("PRAGMA journal_mode = WAL")))[0]
            if mode.lower() != "wal":
                log.warning("store.no_wal", path=self.path, journal_mode=mode)
            await self._conn.execute(f"PRAGMA synchronous = {synchronous}")
            if not tables:
                await self._conn.execute("BEGIN IMMEDIATE")
                for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                    await self._conn.execute(stmt)
                await self._conn.executemany(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    [("schema", SCHEMA_NAME), ("schema_version", str(SCHEMA_VERSION))],
                )
                await self._conn.execute("COMMIT")
        except sqlite3.Error as e:
            if self._conn.in_transaction:
                await self._conn.execute("ROLLBACK")
            raise map_sqlite_error(e, self.path) from e

    async def aclose(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> SqliteStore:
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
        async with self._write_lock:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(is_busy),
                wait=wait_random_exponential(multiplier=0.02, max=1.0),
                stop=stop_after_attempt(30),
                reraise=True,
            ):
                with attempt:
                    try:
                        try:
                            out, inserted = await self._append_txn(events, blobs, cache, False)
                        except sqlite3.IntegrityError:
                            # Some id already exists (a re-append, e.g. on resume): redo the
                            # transaction comparing each one with what is stored.
                            await self._conn.execute("ROLLBACK")
                            out, inserted = await self._append_txn(events, blobs, cache, True)
                    except sqlite3.Error as e:
                        if self._conn.in_transaction:
                            await self._conn.execute("ROLLBACK")
                        if is_busy(e):
                            raise
                        raise map_sqlite_error(e, self.path) from e
                    except BaseException:
                        if self._conn.in_transaction:
                            with anyio.CancelScope(shield=True):
                                await self._conn.execute("ROLLBACK")
                        raise
        if inserted:
            self._appended.set()
            self._appended = anyio.Event()
        return out

    async def _append_txn(
        self,
        events: Sequence[Event],
        blobs: Sequence[bytes | str],
        cache: Sequence[CacheEntry],
        check_existing: bool,
    ) -> tuple[list[Event], int]:
        """One transaction. Without ``check_existing`` it is optimistic: the UNIQUE index on
        ids raises IntegrityError if any event exists, and the caller retries with the check."""
        conn = self._conn
        await conn.execute("BEGIN IMMEDIATE")
        existing: dict[str, Event] = {}
        ids = list(dict.fromkeys(e.id for e in events)) if check_existing else []
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            rows = await conn.execute_fetchall(
                f"SELECT {_COLUMNS} FROM events WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            existing.update((r[1], _row_to_event(r)) for r in rows)
        heads: dict[str, str | None] = {}
        for run_id in dict.fromkeys(e.run_id for e in events if e.id not in existing):
            row = list(
                await conn.execute_fetchall(
                    "SELECT hash FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)
                )
            )
            heads[run_id] = row[0][0] if row else None
        last = next(iter(await conn.execute_fetchall("SELECT COALESCE(MAX(seq), 0) FROM events")))[0]
        inserts, out = plan_append(events, existing, heads.__getitem__, last + 1)
        if inserts:
            await conn.executemany(_INSERT, [_event_row(e) for e in inserts])
        new_blobs = blob_rows(blobs)
        if new_blobs:
            await conn.executemany("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", new_blobs)
        if cache:
            prior: dict[str, dict[str, Any]] = {}
            for entry in cache:
                got = await self._cache_row(entry.key)
                if got is not None:
                    prior[entry.key] = got
            new = check_cache(cache, prior)
            if new:
                await conn.executemany(
                    "INSERT INTO lm_cache (key, value) VALUES (?, ?)",
                    [(c.key, canonical_json(c.value)) for c in new],
                )
        await conn.execute("COMMIT")
        return out, len(inserts)

    async def put_blob(self, data: bytes | str) -> str:
        raw = blob_bytes(data)
        await self.append([], blobs=[raw])
        return sha256_hex(raw)

    async def cache_put(self, key: str, value: dict[str, Any]) -> None:
        await self.append([], cache=[CacheEntry(key, value)])

    # ---- reading -------------------------------------------------------------------------
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
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

    async def _cache_row(self, key: str) -> dict[str, Any] | None:
        rows = list(await self._conn.execute_fetchall("SELECT value FROM lm_cache WHERE key = ?", (key,)))
        return json.loads(rows[0][0]) if rows else None

    async def cache_get(self, key: str) -> dict[str, Any] | None:
        try:
            return await self._cache_row(key)
        except sqlite3.Error as e:
            raise map_sqlite_error(e, self.path) from e

    async def integrity_check(self) -> str:
        rows = await self._fetch("PRAGMA quick_check")
        return str(rows[0][0]) if rows else "unknown"


async def open_store(path: str | os.PathLike[str], *, create: bool = True) -> SqliteStore:
    try:
        return await SqliteStore.open(path, create=create)
    except sqlite3.DatabaseError as e:  # pragma: no cover - mapped inside open
        raise CorruptStore(str(e)) from e
