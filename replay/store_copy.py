"""Copy runs between stores (SQLite <-> PostgreSQL), then prove the copy is the same log.

A run is copied as its events (re-appended under their ids, so the destination rebuilds the
very same hash chain from GENESIS), the blobs they refer to and the LM cache rows their
``lm.responded`` events name (so the copy replays offline, from the cache, as the original
does). Copying onto a store that already holds the run is idempotent; a different event under
a copied id is a ``ConflictError`` and nothing of that batch is written. After the copy the
destination is read back: the chain must verify and equal the source's hash for hash, every
blob must be present and match its address, every cache row must equal the source's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from events import Event, verify_chain
from events.stop_events import LMResponded
from replay.audit import blob_refs
from store.base import CacheEntry, EventStore
from store.errors import StoreError

__all__ = ("RunCopy", "copy_run")

_BATCH = 500


@dataclass
class RunCopy:
    run_id: str
    events: int = 0
    blobs: int = 0
    cache_rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "events": self.events,
            "blobs": self.blobs,
            "cache_rows": self.cache_rows,
            "verified": self.ok,
            "problems": list(self.problems),
        }


def _cache_keys(ev: Event) -> list[str]:
    key = ev.decode(LMResponded).cache_key if ev.is_a(LMResponded) else ""
    return [key] if key else []


async def copy_run(src: EventStore, dst: EventStore, run_id: str) -> RunCopy:
    """Copy one run from ``src`` to ``dst`` and verify the destination (see module doc)."""
    out = RunCopy(run_id)
    events = await src.read(run_id)
    chain = verify_chain(events)
    if not chain.ok:
        out.problems.append(f"source {chain}; not copied")
        return out
    digests: list[str] = []
    keys: list[str] = []
    for i in range(0, len(events), _BATCH):
        chunk = events[i : i + _BATCH]
        blobs: dict[str, bytes] = {}
        cache: list[CacheEntry] = []
        for ev in chunk:
            for _, digest in blob_refs(ev):
                if digest not in blobs and digest not in digests:
                    blobs[digest] = await src.get_blob(digest)  # checked against its hash on read
            for key in _cache_keys(ev):
                value = await src.cache_get(key)
                if value is None:
                    raise StoreError(f"source has no LM cache row {key} named by event {ev.id}")
                cache.append(CacheEntry(key, value))
        # ``body()`` is each event as stored (not as read, upcast): the copy keeps its hashes.
        await dst.append([Event(**ev.body()) for ev in chunk], blobs=list(blobs.values()), cache=cache)
        digests.extend(blobs)
        keys.extend(c.key for c in cache)
    out.events, out.blobs, out.cache_rows = len(events), len(digests), len(keys)
    await _verify(src, dst, events, digests, keys, out)
    return out


async def _verify(
    src: EventStore, dst: EventStore, events: list[Event], digests: list[str], keys: list[str], out: RunCopy
) -> None:
    copied = await dst.read(out.run_id)
    chain = verify_chain(copied)
    if not chain.ok:
        out.problems.append(f"destination {chain}")
    if [(e.id, e.hash) for e in copied] != [(e.id, e.hash) for e in events]:
        out.problems.append(
            f"destination holds {len(copied)} events of the run, source {len(events)}; their ids or hashes differ"
        )
    for digest in digests:
        try:
            await dst.get_blob(digest)
        except StoreError as e:
            out.problems.append(f"blob {digest}: {e}")
    for key in keys:
        if await dst.cache_get(key) != await src.cache_get(key):
            out.problems.append(f"LM cache row {key} differs after the copy")
