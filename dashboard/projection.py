"""What the dashboard shows of a run, as projections of its log kept up to date by cursor.

A :class:`RunState` holds one run's events and causal tree, folded page by page from the store
(``read(run, after=last_seq)``: only the events appended since the last look are read). The
views built on it (lineage, audit counts, outcome) are recomputed only when new events arrived.
Nothing here writes; the store is opened read-only by the server.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from agents.run_status import RUN_LEVEL_STATUS, RunOutcome, run_outcome
from events.model import Event
from replay.audit import AuditReport, audit_log
from replay.costs import LMCall, LMUsage, lm_calls, prices_from_config
from replay.lineage import Lineage, lineage_from_tree
from replay.runs import RunLog
from replay.tree import TREE, CausalTree
from store.base import EventStore

__all__ = ("RunState", "RunSummary", "RunViews", "Runs", "run_model", "wall_times")

#: Event types that end a run.
END_TYPES = ("run.finished", "run.failed")

#: The events ``agents.run_status.run_outcome`` reads (besides the root): while none of these
#: arrives, a run's outcome cannot change, so it is not recomputed (it reads the whole run).
_OUTCOME_TYPES = frozenset({*END_TYPES, *RUN_LEVEL_STATUS, "session.completed", "lm.failed", "budget.raised"})


def run_model(root: Event | None) -> str:
    """The model a run asked for: the config's ``lm.model``, else the LM backend it announced."""
    if root is None:
        return "?"
    config = root.payload.get("config")
    lm = config.get("lm") if isinstance(config, Mapping) else None
    if isinstance(lm, Mapping) and lm.get("model"):
        return str(lm["model"])
    host = root.payload.get("host")
    described = host.get("lm") if isinstance(host, Mapping) else None
    if isinstance(described, Mapping):
        return str(described.get("model") or described.get("backend") or described.get("kind") or "offline")
    if isinstance(described, str) and described:
        return described
    return "offline"


def wall_times(events: list[Event]) -> tuple[float | None, float | None]:
    """(first, last) wall-clock time the log records for a run. Events carry no time of their
    own; work leases do (``expires_at - lease_s`` is when a worker claimed or renewed work, by its
    clock), so these are the start and the last activity as the workers saw them."""
    times = []
    for ev in events:
        if ev.type in ("work.claimed", "work.renewed"):
            exp, lease = ev.payload.get("expires_at"), ev.payload.get("lease_s")
            if isinstance(exp, (int, float)):
                times.append(float(exp) - (float(lease) if isinstance(lease, (int, float)) else 0.0))
    return (min(times), max(times)) if times else (None, None)


@dataclass
class RunViews:
    """Everything the run page shows, computed at one log position (``last_seq``)."""

    run_id: str
    last_seq: int
    last_event_id: str | None
    events: int
    tree: CausalTree
    lineage: Lineage
    audit: AuditReport
    outcome: RunOutcome
    calls: list[LMCall]
    model: str
    started_at: float | None
    active_at: float | None
    ended: bool

    @property
    def usage(self) -> LMUsage:
        return self.audit.lm

    @property
    def status(self) -> str:
        """The outcome once the run has ended. Before, the log cannot tell a running run from an
        interrupted one (resumable): "running" while its workers were active within the last
        two minutes (by their lease times), else the outcome's "interrupted"."""
        if self.ended or self.active_at is None or time.time() - self.active_at >= 120:
            return str(self.outcome.status)
        return "running"


@dataclass
class RunSummary:
    """One row of the runs list."""

    run_id: str
    command: str
    status: str
    reason: str
    model: str
    cost_usd: float
    tokens: int
    lm_calls: int
    events: int
    generations: int
    started_at: float | None
    active_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "command": self.command,
            "status": self.status,
            "reason": self.reason,
            "model": self.model,
            "cost_usd": round(self.cost_usd, 6),
            "tokens": self.tokens,
            "lm_calls": self.lm_calls,
            "events": self.events,
            "generations": self.generations,
            "started_at": self.started_at,
            "active_at": self.active_at,
        }


@dataclass
class RunState:
    """One run's log as read so far, and the views of its latest position."""

    run_id: str
    events: list[Event] = field(default_factory=list)
    tree: CausalTree = field(default_factory=TREE.initial)
    last_seq: int = 0
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    _views: RunViews | None = None
    #: how many outcome-relevant events the cached outcome saw
    _outcome_key: int = -1
    _outcome: RunOutcome | None = None
    _outcome_events: int = 0

    async def catch_up(self, store: EventStore, page: int = 5000) -> bool:
        """Read what was appended since the last look; True if anything was."""
        grew = False
        while True:
            batch = await store.read(self.run_id, after=self.last_seq, limit=page)
            for ev in batch:
                self.events.append(ev)
                self.tree = TREE.apply(self.tree, ev)
                self.last_seq = ev.seq or self.last_seq
                if ev.type in _OUTCOME_TYPES:
                    self._outcome_events += 1
            grew = grew or bool(batch)
            if len(batch) < page:
                return grew

    async def views(self, store: EventStore) -> RunViews:
        async with self.lock:
            grew = await self.catch_up(store)
            if self._views is None or grew:
                self._views = await self._build(store)
            return self._views

    async def _build(self, store: EventStore) -> RunViews:
        tree = self.tree
        root = tree.root
        config = root.payload.get("config") if root is not None else None
        calls = lm_calls(tree, prices_from_config(config if isinstance(config, Mapping) else None))
        lineage = lineage_from_tree(tree, calls)
        audit = audit_log(RunLog(self.run_id, list(self.events)), tree, lineage)
        final = next((e for e in reversed(self.events) if e.type in END_TYPES), None)
        if self._outcome is None or self._outcome_key != self._outcome_events:
            self._outcome = await run_outcome(store, self.run_id, final)
            self._outcome_key = self._outcome_events
        outcome = self._outcome
        started, active = wall_times(self.events)
        return RunViews(
            run_id=self.run_id,
            last_seq=self.last_seq,
            last_event_id=self.events[-1].id if self.events else None,
            events=len(self.events),
            tree=tree,
            lineage=lineage,
            audit=audit,
            outcome=outcome,
            calls=calls,
            model=run_model(root),
            started_at=started,
            active_at=active,
            ended=final is not None,
        )


class Runs:
    """Every run of a store the dashboard has looked at (read lazily, kept up to date)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._runs: dict[str, RunState] = {}

    async def ids(self) -> list[str]:
        return list(await self.store.run_ids())

    def state(self, run_id: str) -> RunState:
        if run_id not in self._runs:
            self._runs[run_id] = RunState(run_id)
        return self._runs[run_id]

    async def views(self, run_id: str) -> RunViews:
        return await self.state(run_id).views(self.store)

    async def summaries(self) -> list[RunSummary]:
        out = []
        for run_id in await self.ids():
            v = await self.views(run_id)
            out.append(
                RunSummary(
                    run_id=run_id,
                    command=v.lineage.command or (str(v.tree.root.payload.get("command", "")) if v.tree.root else ""),
                    status=v.status,
                    reason=v.outcome.reason,
                    model=v.model,
                    cost_usd=v.usage.cost_usd,
                    tokens=v.usage.tokens,
                    lm_calls=v.usage.calls,
                    events=v.events,
                    generations=len(v.tree.of_type("generation.started")),
                    started_at=v.started_at,
                    active_at=v.active_at,
                )
            )
        return out
