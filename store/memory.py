"""In-memory store: same semantics as SQLite, for tests and replay scratch space."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

from events.codec import normalise, sha256_hex
from events.model import Event, upcast_on_read
from store.base import CacheEntry, blob_bytes
from store.errors import CorruptBlob, StoreError
from store.follow import follow
from store.planning import blob_rows, check_cache, next_run_id, plan_append
from store.tail import DEFAULT_CAPACITY, Tail

__all__ = ("MemoryStore",)


class MemoryStore:
    def __init__(self, *, tail_capacity: int = DEFAULT_CAPACITY) -> None:
        self._events: list[Event] = []
        self._by_id: dict[str, Event] = {}
        self._heads: dict[str, str] = {}
        self._by_cause: dict[str, list[Event]] = {}
        self._blobs: dict[str, bytes] = {}
        self._cache: dict[str, dict[str, Any]] = {}
        self._tail = Tail(tail_capacity)

    async def append(
        self,
        events: Sequence[Event],
        *,
        blobs: Sequence[bytes | str] = (),
        cache: Sequence[CacheEntry] = (),
    ) -> list[Event]:
        existing = {e.id: self._by_id[e.id] for e in events if e.id in self._by_id}
        inserts, out = plan_append(events, existing, self._heads.get, len(self._events) + 1)
        new_cache = check_cache(cache, {c.key: self._cache[c.key] for c in cache if c.key in self._cache})
        added = []
        for row in inserts:
            ev = upcast_on_read(row)  # kept as a read gives it; the stored form rides along
            added.append(ev)
            self._events.append(ev)
            self._by_id[ev.id] = ev
            self._heads[ev.run_id] = ev.hash or ""
            if ev.causation_id is not None:
                self._by_cause.setdefault(ev.causation_id, []).append(ev)
        for digest, data in blob_rows(blobs):
            self._blobs[digest] = data
        for entry in new_cache:
            self._cache[entry.key] = normalise(entry.value)
        self._tail.add(added)  # never a gap: this list is the whole log
        return out

    async def start_run(self, prefix: str, make_root: Callable[[str], Event]) -> Event:
        """Allocate the next free run id ``PREFIX-N`` and append its first event (atomic: no
        await between choosing the id and appending)."""
        root = make_root(next_run_id(prefix, self._heads))
        return (await self.append([root]))[0]

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
        out = []
        for ev in self._events[max(after, 0) : None if below is None else max(below - 1, 0)]:
            if (run_id is None or ev.run_id == run_id) and (types is None or ev.type in types):
                out.append(ev)
                if limit is not None and len(out) >= limit:
                    break
        return out

    async def get(self, event_id: str) -> Event | None:
        return self._by_id.get(event_id)

    async def head(self, run_id: str) -> Event | None:
        for ev in reversed(self._events):
            if ev.run_id == run_id:
                return ev
        return None

    async def children(self, causation_id: str, types: Collection[str] | None = None) -> list[Event]:
        return [ev for ev in self._by_cause.get(causation_id, ()) if types is None or ev.type in types]

    async def last_seq(self) -> int:
        return len(self._events)

    async def run_ids(self) -> list[str]:
        return list(dict.fromkeys(ev.run_id for ev in self._events))

    def subscribe(
        self,
        run_id: str | None = None,
        *,
        after: int = 0,
        types: Collection[str] | None = None,
    ) -> AsyncIterator[Event]:
        return follow(self._tail, self._read_below, self._poll, run_id=run_id, after=after, types=types, poll_s=None)

    async def _poll(self, after: int) -> list[Event]:
        return self._events[after:]  # never called: without other processes there is nothing to poll

    async def put_blob(self, data: bytes | str) -> str:
        raw = blob_bytes(data)
        digest = sha256_hex(raw)
        self._blobs[digest] = raw
        return digest

    async def get_blob(self, digest: str) -> bytes:
        try:
            data = self._blobs[digest]
        except KeyError:
            raise StoreError(f"no blob {digest}") from None
        if sha256_hex(data) != digest:
            raise CorruptBlob(f"blob {digest} does not match its hash")
        return data

    async def cache_get(self, key: str) -> dict[str, Any] | None:
        return self._cache.get(key)

    async def cache_rows(self) -> list[CacheEntry]:
        """Every LM cache row, by key (for the audit)."""
        return [CacheEntry(k, self._cache[k]) for k in sorted(self._cache)]

    async def cache_put(self, key: str, value: dict[str, Any]) -> None:
        await self.append([], cache=[CacheEntry(key, value)])

    async def aclose(self) -> None:
        return None
