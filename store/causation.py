"""Walking a run's causal tree upwards: the one ancestor walk every reader uses.

An event's ``causation_id`` names the event that caused it; following those ids reaches the
run's ``run.started``. Readers with a store walk it through ``get``; readers holding a whole run
in memory walk it through their index. A missing link or a cycle (a tampered or partial log) ends
the walk instead of hanging it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

from events import Event

__all__ = ("ancestors", "ancestors_in")


async def ancestors(get: Callable[[str], Awaitable[Event | None]], ev: Event) -> AsyncIterator[Event]:
    """``ev``'s cause, its cause's cause, ... up to the run's root (``get`` is ``store.get``)."""
    seen = {ev.id}
    cur: Event | None = ev
    while cur is not None and cur.causation_id and cur.causation_id not in seen:
        seen.add(cur.causation_id)
        cur = await get(cur.causation_id)
        if cur is not None:
            yield cur


def ancestors_in(index: Mapping[str, Event], ev: Event) -> Iterator[Event]:
    """The same walk over an in-memory ``id -> event`` index."""
    seen = {ev.id}
    cur: Event | None = ev
    while cur is not None and cur.causation_id and cur.causation_id not in seen:
        seen.add(cur.causation_id)
        cur = index.get(cur.causation_id)
        if cur is not None:
            yield cur
