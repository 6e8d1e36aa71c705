"""An incremental in-memory view of one run's workflow-level events: the workflows' projection."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

from agents.meta_tally import MetaTally
from events import Event
from events.routing import WORKFLOW_VIEW
from store.base import EventStore

__all__ = ("RunView", "ViewGet")


class RunView:
    """An in-memory index of a run's workflow-level events, caught up incrementally from the log.

    Workflows are re-entrant: every trigger walks the run's decisions from its root again (a
    self-repair run walks all of its up to 164 problems), so point queries per step would make a
    run quadratic in store round trips. The log is append-only and its ``seq``
    follows commit order, so reading only what came after the last seen ``seq`` keeps the index
    exact as of the call's start (any later answer triggers another call). Events this process
    appends, and committed events an agent is handed by its subscription, are indexed at once
    but never advance ``last_seq``, so nothing committed by others is skipped. Blobs are
    content-addressed, hence cached without invalidation.

    A view belongs to one agent context (``ctx.runs.view(run_id)``, ``agents.runs``) and is
    a projection of the log only: a new context builds the same view from the log again.
    """

    def __init__(self) -> None:
        self.last_seq = 0
        self.by_id: dict[str, Event] = {}
        self.kids: defaultdict[str | None, list[Event]] = defaultdict(list)
        self.blobs: dict[str, str] = {}
        #: Per meta-utility request id: what its walks found so far (``agents.meta_tally``).
        self.meta_tallies: dict[str, MetaTally] = {}

    def add(self, ev: Event) -> None:
        if ev.id not in self.by_id:
            self.by_id[ev.id] = ev
            self.kids[ev.causation_id].append(ev)

    def answer(self, request_id: str, types: Collection[str]) -> Event | None:
        """The first recorded child of ``request_id`` of one of ``types``, if the view holds one."""
        found = [e for e in self.kids.get(request_id, []) if e.type in types]
        return min(found, key=lambda e: e.seq or 0) if found else None

    def getter(self, store: EventStore) -> ViewGet:
        return ViewGet(self, store)

    async def refresh(self, store: EventStore, run_id: str) -> None:
        for ev in await store.read(run_id, after=self.last_seq, types=WORKFLOW_VIEW):
            self.add(ev)
            self.last_seq = max(self.last_seq, ev.seq or 0)


class ViewGet:
    """The ``get`` that ``agents.identity.lm_namespace`` needs, served from the view when it can."""

    def __init__(self, view: RunView, store: EventStore) -> None:
        self.view, self.store = view, store

    async def get(self, event_id: str) -> Event | None:
        return self.view.by_id.get(event_id) or await self.store.get(event_id)
