"""Projections: every piece of state is a fold over the log, rebuildable at any time."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from events.model import Event
from store.base import EventStore

__all__ = ("Projection", "fold", "project")

S = TypeVar("S")


class Projection(Generic[S]):
    """A pure fold: ``initial`` state and ``apply(state, event) -> state``."""

    def __init__(self, initial: Callable[[], S], apply: Callable[[S, Event], S]) -> None:
        self.initial = initial
        self.apply = apply


def fold(events: Iterable[Event], projection: Projection[S]) -> S:
    state = projection.initial()
    for ev in events:
        state = projection.apply(state, ev)
    return state


async def project(store: EventStore, run_id: str | None, projection: Projection[S], *, page: int = 10_000) -> S:
    """Fold a run (or the whole log) page by page, so memory stays bounded by the state."""
    state = projection.initial()
    after = 0
    while True:
        batch = await store.read(run_id, after=after, limit=page)
        for ev in batch:
            state = projection.apply(state, ev)
        if len(batch) < page:
            return state
        after = batch[-1].seq or after
