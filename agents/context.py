"""What every agent is handed: the store, who it is, the replay seam, and what it remembers.

Run state lives on the context (``AgentContext.runs``), never in module globals. The one
process-wide value here is the counter that keeps worker names unique within this process
(the pid in the name separates processes).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Sequence
from dataclasses import InitVar, dataclass, field
from itertools import count

import anyio
import structlog

from agents.runs import RunMemory
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
    whose recorded evaluation outcomes are served by identity.

    ``runs`` is what this context remembers of the runs it serves (``agents.runs``). Each
    context makes its own unless handed one (``memory``) for the same store, to share it on
    purpose between contexts of one process."""

    store: EventStore
    run_id: str | None
    agent: str
    recorded: EventStore | None = None
    re_execute_evaluations: bool = False
    lease_s: float = 30.0
    #: Replay of a changed program: recorded program hash -> the text to run in its place.
    substitutions: dict[str, str] = field(default_factory=dict)
    worker: str = field(default="")
    memory: InitVar[RunMemory | None] = None
    runs: RunMemory = field(init=False, repr=False)

    def __post_init__(self, memory: RunMemory | None) -> None:
        if memory is not None and memory.store is not self.store:
            raise ValueError("a context's run memory must be of the context's own store")
        self.runs = memory if memory is not None else RunMemory(self.store)
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
    then wait: an answer appended at any moment is seen exactly once. ``types`` are the answer
    types waited for (None: any): the subscription reads only those, not every event of the run.
    """

    def __init__(self, store: EventStore, run_id: str | None, types: Collection[str] | None = None) -> None:
        self._store = store
        self._run_id = run_id
        self._types = frozenset(types) if types is not None else None
        self._waiting: dict[str, list[tuple[Collection[str], anyio.Event, list[Event]]]] = {}

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        start = await self._store.last_seq()
        task_status.started()
        async for ev in self._store.subscribe(self._run_id, after=start, types=self._types):
            if ev.causation_id in self._waiting:
                self._deliver(ev)

    def _deliver(self, ev: Event) -> None:
        for types, done, box in self._waiting.get(ev.causation_id or "", []):
            if ev.type in types and not box:
                box.append(ev)
                done.set()

    async def wait(self, cause_id: str, types: Collection[str]) -> Event:
        if self._types is not None and not self._types.issuperset(types):
            raise ValueError(f"this waiter follows {sorted(self._types)}, not {sorted(set(types) - self._types)}")
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
