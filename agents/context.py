"""What every agent is handed: the store, who it is, and the replay seam."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from itertools import count

import anyio
import structlog

from events import Event
from store import ConflictError
from store.base import CacheEntry, EventStore

__all__ = ("AgentContext", "AnswerWaiter", "append_once")

_instances = count()


def _worker_name(agent: str) -> str:
    return f"{agent}@{socket.gethostname()}:{os.getpid()}:{next(_instances)}"


@dataclass
class AgentContext:
    """``recorded`` is set during replay: the log being replayed, whose LM cache answers and
    whose recorded evaluation outcomes are served by identity."""

    store: EventStore
    run_id: str | None
    agent: str
    recorded: EventStore | None = None
    re_execute_evaluations: bool = False
    lease_s: float = 30.0
    #: Replay of a changed program: recorded program hash -> the text to run in its place.
    substitutions: dict[str, str] = field(default_factory=dict)
    worker: str = field(default="")

    def __post_init__(self) -> None:
        if not self.worker:
            self.worker = _worker_name(self.agent)
        self.log = structlog.get_logger("agent").bind(agent=self.agent, run_id=self.run_id)


async def append_once(
    store: EventStore,
    events: Sequence[Event],
    *,
    blobs: Sequence[bytes | str] = (),
    cache: Sequence[CacheEntry] = (),
) -> list[Event] | None:
    """Append; ``None`` when another worker already recorded a different outcome (it won)."""
    try:
        return await store.append(events, blobs=blobs, cache=cache)
    except ConflictError:
        return None


class AnswerWaiter:
    """Waits for the event that answers a request (a child of it, of given types).

    One subscription serves every waiter of an agent. Register first, then look in the store,
    then wait: an answer appended at any moment is seen exactly once.
    """

    def __init__(self, store: EventStore, run_id: str | None) -> None:
        self._store = store
        self._run_id = run_id
        self._waiting: dict[str, list[tuple[Collection[str], anyio.Event, list[Event]]]] = {}

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        start = await self._store.last_seq()
        task_status.started()
        async for ev in self._store.subscribe(self._run_id, after=start):
            if ev.causation_id in self._waiting:
                self._deliver(ev)

    def _deliver(self, ev: Event) -> None:
        for types, done, box in self._waiting.get(ev.causation_id or "", []):
            if ev.type in types and not box:
                box.append(ev)
                done.set()

    async def wait(self, cause_id: str, types: Collection[str]) -> Event:
        done = anyio.Event()
        box: list[Event] = []
        entry = (types, done, box)
        self._waiting.setdefault(cause_id, []).append(entry)
        try:
            found = await self._store.children(cause_id, types)
            if found:
                return found[0]
            await done.wait()
            return box[0]
        finally:
            waiting = self._waiting.get(cause_id, [])
            if entry in waiting:
                waiting.remove(entry)
            if not waiting:
                self._waiting.pop(cause_id, None)
