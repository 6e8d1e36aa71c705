"""Deterministic replay: run a recorded run again and compare every event by identity.

What runs again: the agents' own logic and every improver program (in the sandbox). What is
served from the recording: LM answers (the cache, in strict replay mode — a request the
recording never made is an error naming it; no backend exists, so nothing touches the network)
and candidate-solution evaluations (batch outcomes by identity), so a replay is exact even for
time-sensitive utilities. ``re_execute_evaluations`` runs those batches again and reports the
utilities that come out different (flaky or time-sensitive code).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import anyio

from agents.config import RunConfig
from agents.launch import Agents, run_agents
from agents.progress import report_progress
from agents.runinfo import run_info
from agents.session import open_pool
from agents.steps import put_text
from events import Event, make_event
from events.stop_events import UtilityEvaluated
from events.types import RunFailed, RunFinished, RunStarted
from lm import CacheMode
from replay.compare import Comparison, compare_runs
from replay.scratch import ReplayStore
from store.base import EventStore
from tasks.meta import SEED_IMPROVER

__all__ = ("ReplayResult", "replay_run")


@dataclass
class ReplayResult:
    run_id: str
    comparison: Comparison
    final: Event | None
    flaky: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: the recording has no run.finished / run.failed: only its recorded prefix was compared
    unfinished: bool = False

    @property
    def identical(self) -> bool:
        return self.comparison.identical and not self.flaky

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "identical": self.identical,
            "unfinished": self.unfinished,
            "compared": self.comparison.compared,
            "final": self.final.type if self.final else None,
            "first_divergence": self.comparison.first.to_json() if self.comparison.first else None,
            "divergences": len(self.comparison.divergences),
            "flaky_utilities": self.flaky,
        }


def _root_for_replay(root: Event, config: RunConfig | None) -> Event:
    """The recorded root as it was stored, or (``config``) the same root with another config."""
    if config is None:
        return Event(**root.body())
    started = root.decode(RunStarted)
    options = started.config.get("options", {})
    changed = dataclasses.replace(started, config={**config.to_dict(), "options": options})
    out = make_event(root.run_id, changed, cause=root.causation_id, key=root.key)
    assert out.id == root.id  # an identity never depends on the payload
    return out


async def _starting_improver(recorded: EventStore, run_id: str) -> str:
    info = await run_info(recorded, run_id)
    return str(info.options.get("improver") or put_text(SEED_IMPROVER)[0])


def _flaky(recorded: list[Event], replayed: list[Event]) -> list[dict[str, Any]]:
    old = {e.id: e.decode(UtilityEvaluated) for e in recorded if e.is_a(UtilityEvaluated)}
    out = []
    for ev in replayed:
        prior = old.get(ev.id)
        if prior is None or not ev.is_a(UtilityEvaluated):
            continue
        now = ev.decode(UtilityEvaluated)
        if prior.utility != now.utility:
            out.append(
                {
                    "event_id": ev.id,
                    "task": now.task,
                    "split": now.split,
                    "recorded": prior.utility,
                    "replayed": now.utility,
                }
            )
    return out


async def replay_run(
    recorded: EventStore,
    run_id: str,
    *,
    re_execute_evaluations: bool = False,
    improver_text: str | None = None,
    config: RunConfig | None = None,
    timeout_s: float | None = None,
    progress: bool = False,
) -> ReplayResult:
    """Replay ``run_id`` of ``recorded`` into a scratch store; ``recorded`` is only read.

    ``improver_text`` replaces the run's starting improver (same identity, new text) and
    ``config`` replaces its configuration: how a user finds where behaviour changed.
    """
    rec_events = await recorded.read(run_id)
    if not rec_events or not rec_events[0].is_a(RunStarted):
        raise LookupError(f"run {run_id} has no run.started event to replay from")
    scratch = ReplayStore(recorded)
    root = _root_for_replay(rec_events[0], config)
    await scratch.append([root])
    info = await run_info(scratch, run_id)
    substitutions: dict[str, str] = {}
    if improver_text is not None:
        substitutions[await _starting_improver(recorded, run_id)] = improver_text
    final: Event | None = None
    async with open_pool(info.config) as pool:
        agents = Agents(
            scratch,
            pool=pool,
            backend=None,
            mode=CacheMode.REPLAY,
            recorded=recorded,
            re_execute_evaluations=re_execute_evaluations,
            lease_s=info.config.lease_s,
            substitutions=substitutions,
        )
        with anyio.move_on_after(timeout_s if timeout_s is not None else float("inf")):
            async with anyio.create_task_group() as tg:
                if progress:  # the replayed run's progress view on stderr (agents.progress)
                    tg.start_soon(report_progress, scratch, run_id)
                final = await run_agents(agents, run_id)
                tg.cancel_scope.cancel()
    replayed = await scratch.read(run_id)
    unfinished = not any(e.is_a(RunFinished) or e.is_a(RunFailed) for e in rec_events)
    comparison = compare_runs(rec_events, replayed, ignore_root=config is not None, prefix_only=unfinished)
    flaky = _flaky(rec_events, replayed) if re_execute_evaluations else []
    return ReplayResult(run_id, comparison, final, flaky, replayed, unfinished)
