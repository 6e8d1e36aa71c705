"""Forks: a new run that shares a recorded run's prefix and goes on differently from an event.

A fork records its source and cut point in its options. Its LM requests whose causal position
(the path of ``type:key`` steps from the root) the source asked at or before the cut are asked
exactly as the source asked them (same model), so the cache serves the recorded answers; every
later request uses the fork's own model and config. ``stop diff`` then shows where they part.
"""

from __future__ import annotations

import weakref
from typing import Any

from events import Event
from store.base import EventStore

__all__ = ("ForkPrefix", "fork_prefix")

_CACHE: weakref.WeakKeyDictionary[EventStore, dict[tuple[str, int], ForkPrefix]] = weakref.WeakKeyDictionary()


class ForkPrefix:
    def __init__(self, requests: dict[str, dict[str, Any]]) -> None:
        self._requests = requests

    def recorded_request(self, path: str) -> dict[str, Any] | None:
        """The source's request at this causal path, if it was asked before the cut."""
        return self._requests.get(path)


def _paths(events: list[Event]) -> dict[str, str]:
    by_id = {e.id: e for e in events}
    out: dict[str, str] = {}
    for ev in events:
        steps = []
        cur: Event | None = ev
        while cur is not None:
            steps.append(f"{cur.type}:{cur.key}")
            cur = by_id.get(cur.causation_id) if cur.causation_id else None
        out[ev.id] = "/".join(reversed(steps))
    return out


async def fork_prefix(store: EventStore, options: dict[str, Any]) -> ForkPrefix | None:
    fork = options.get("fork")
    if not fork:
        return None
    cache = _CACHE.setdefault(store, {})
    key = (str(fork["run"]), int(fork["at_seq"]))
    if key not in cache:
        events = await store.read(str(fork["run"]))
        paths = _paths(events)
        cache[key] = ForkPrefix(
            {
                paths[e.id]: e.payload["request"]
                for e in events
                if e.type == "lm.requested" and (e.seq or 0) <= int(fork["at_seq"])
            }
        )
    return cache[key]
