"""The evaluator: turns "score solution S on task X, split Y" into sandbox work and folds the
outcomes into a utility event (per-instance detail in a blob).

It is a pure reaction: a ``utility.requested`` for a downstream task (or a HumanEval check)
gets one ``sandbox.batch.requested``; a ``sandbox.batch.completed`` gets the
``utility.evaluated`` answering the original request. Appends are idempotent, so seeing an
event twice (resume, a second copy of the agent) changes nothing, and nothing is read first
to find out: an answered request's batch is already stored, and re-appending it is a no-op.

The batches this evaluator asked for while live are remembered until they complete, so their
results are folded without looking the request up again. A result from before it started (a
resume) or asked by another process is looked up in the store, and skipped if answered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import anyio

from agents.context import AgentContext, append_once
from agents.loop import serve
from agents.tasks_view import fold_recorded
from events import Event, make_event
from events.routing import EVALUATOR, triggers
from events.stop_events import SandboxBatchCompleted, SandboxBatchRequested, UtilityEvaluated, UtilityRequested
from sandbox import JobResult

__all__ = ("META_TASK", "run_evaluator")

META_TASK = "meta"


@dataclass
class _Asked:
    """Batches asked while live: batch id -> the utility request it serves."""

    live_after: int
    requests: dict[str, Event]


async def on_utility_requested(ctx: AgentContext, asked: _Asked, ev: Event) -> bool:
    p = ev.decode(UtilityRequested)
    if p.task == META_TASK:
        return True  # the meta-evaluator's
    batch = make_event(
        ev.run_id,
        SandboxBatchRequested(task=p.task, split=p.split, solution=p.solution, seed=p.seed),
        cause=ev,
        key="batch",
    )
    await append_once(ctx.store, [batch])
    if (ev.seq or 0) > asked.live_after:
        asked.requests[batch.id] = ev
    return True


async def _request_of(ctx: AgentContext, asked: _Asked, ev: Event) -> Event | None:
    """The utility request a batch result answers; None when it is answered already."""
    request = asked.requests.pop(ev.causation_id or "", None)
    if request is not None:
        return request
    batch = await ctx.store.get(ev.causation_id or "")
    request = await ctx.store.get(batch.causation_id or "") if batch else None
    if batch is None or request is None:
        raise LookupError(f"batch result {ev.id} has no recorded request")
    if await ctx.store.children(request.id, {UtilityEvaluated.TYPE}):
        return None
    return request


async def on_batch_completed(ctx: AgentContext, asked: _Asked, ev: Event) -> bool:
    request = await _request_of(ctx, asked, ev)
    if request is None:
        return True
    completed = ev.decode(SandboxBatchCompleted)
    scored = request.decode(UtilityRequested)  # the batch asks for exactly this task and split

    async def results() -> list[JobResult]:
        raw = json.loads(await ctx.store.get_blob(completed.results))
        return [JobResult.from_json(r) for r in raw]

    folded = await fold_recorded(scored.task, scored.split, completed.results, results)
    detail = folded.detail
    detail["statuses"] = dict(completed.statuses)
    detail["violations"] = list(completed.violations)
    blobs: list[bytes] = []
    if folded.outcomes_blob is not None:
        blobs.append(folded.outcomes_blob)
        detail["invalid_outputs"] = folded.invalid_outputs
    done = make_event(
        request.run_id,
        UtilityEvaluated(
            task=scored.task,
            split=scored.split,
            utility=float(folded.utility),
            detail=detail,
            outcomes=folded.outcomes,
        ),
        cause=request,
        key="result",
    )
    await append_once(ctx.store, [done], blobs=blobs)
    return True


async def run_evaluator(
    ctx: AgentContext, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    asked = _Asked(live_after=await ctx.store.last_seq(), requests={})

    async def handle(ev: Event) -> bool:
        if ev.is_a(UtilityRequested):
            return await on_utility_requested(ctx, asked, ev)
        return await on_batch_completed(ctx, asked, ev)

    await serve(ctx, triggers(EVALUATOR), handle, limit=4, task_status=task_status)
