"""The one append rule both stores share: idempotency, conflicts, sequence and chaining.

Kept pure (no I/O) so the SQLite and in-memory stores cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from events.codec import canonical_json, sha256_hex
from events.model import GENESIS, Event, upcast_on_read
from store.base import CacheEntry, blob_bytes
from store.errors import ConflictError

__all__ = ("AppendPlanner", "blob_rows", "check_cache", "next_run_id", "plan_append")


class AppendPlanner:
    """Plans one transaction's events chunk by chunk (so writing can overlap planning).

    ``existing`` maps the batch's ids already in the store to their stored events;
    ``head_of(run_id)`` gives the hash of a run's last stored event (None for a new run).
    """

    def __init__(self, existing: Mapping[str, Event], head_of: Callable[[str], str | None], next_seq: int) -> None:
        self._existing = existing
        self._head_of = head_of
        self._next_seq = next_seq
        self._heads: dict[str, str] = {}
        self._fresh: dict[str, Event] = {}

    def plan(self, chunk: Sequence[Event]) -> tuple[list[Event], list[Event]]:
        """Return (rows to insert, the stored event for each input in order).

        The rows are in their stored form (what the chain hash covers); the returned events are
        as a read would give them, upcast to the newest version of their type."""
        inserts: list[Event] = []
        out: list[Event] = []
        heads = self._heads
        for ev in chunk:
            prior = self._existing.get(ev.id) or self._fresh.get(ev.id)
            if prior is not None:
                if not prior.same_content(ev):
                    raise ConflictError(
                        f"event {ev.id} ({ev.type}) already exists with a different content;"
                        " the log is append-only and the stored event was kept"
                    )
                out.append(prior)
                continue
            if ev.run_id not in heads:
                heads[ev.run_id] = self._head_of(ev.run_id) or GENESIS
            stored = ev.stored(seq=self._next_seq, prev_hash=heads[ev.run_id])
            heads[ev.run_id] = stored.hash or GENESIS
            self._next_seq += 1
            self._fresh[ev.id] = stored
            inserts.append(stored)
            out.append(upcast_on_read(stored))
        return inserts, out


def plan_append(
    batch: Sequence[Event],
    existing: Mapping[str, Event],
    head_of: Callable[[str], str | None],
    next_seq: int,
) -> tuple[list[Event], list[Event]]:
    """Plan a whole batch at once (see ``AppendPlanner``)."""
    return AppendPlanner(existing, head_of, next_seq).plan(batch)


def check_cache(entries: Sequence[CacheEntry], existing: Mapping[str, dict[str, Any]]) -> list[CacheEntry]:
    """Cache rows to insert; an existing key must hold exactly the same record."""
    new: dict[str, CacheEntry] = {}
    for entry in entries:
        prior = existing.get(entry.key)
        if prior is None and entry.key in new:
            prior = new[entry.key].value
        if prior is not None:
            if canonical_json(prior) != canonical_json(entry.value):
                raise ConflictError(f"LM cache key {entry.key} already holds a different record")
            continue
        new[entry.key] = entry
    return list(new.values())


def blob_rows(blobs: Sequence[bytes | str]) -> list[tuple[str, bytes]]:
    rows: dict[str, bytes] = {}
    for b in blobs:
        data = blob_bytes(b)
        rows[sha256_hex(data)] = data
    return sorted(rows.items())


def next_run_id(prefix: str, taken: Collection[str]) -> str:
    """The first free ``PREFIX-N`` (N counting from the number of runs of the prefix already
    recorded, so ids stay dense). Call it inside the transaction that appends the run's first
    event: that is what makes allocation atomic."""
    ours = {r for r in taken if r.startswith(prefix + "-")}
    n = len(ours)
    while f"{prefix}-{n}" in ours:
        n += 1
    return f"{prefix}-{n}"
