"""The evaluator: turns "score solution S on task X, split Y" into sandbox work and folds the
outcomes into a utility event (per-instance detail in a blob).

It is a pure reaction: a ``utility.requested`` for a downstream task (or a HumanEval check)
gets one ``sandbox.batch.requested``; a ``sandbox.batch.completed`` gets the
``utility.evaluated`` answering the original request. Appends are idempotent, so seeing an
event twice (resume, a second copy of the agent) changes nothing.
"""

from __future__ import annotations

import json

import anyio

from agents.context import AgentContext, append_once
from agents.loop import serve
from agents.tasks_view import fold_utility
from events import Event, make_event, sha256_hex
from events.routing import EVALUATOR, triggers
from events.stop_events import SandboxBatchCompleted, SandboxBatchRequested, UtilityEvaluated, UtilityRequested
from sandbox import JobResult

__all__ = ("META_TASK", "run_evaluator")

META_TASK = "meta"


async def on_utility_requested(ctx: AgentContext, ev: Event) -> bool:
    p = ev.decode(UtilityRequested)
    if p.task == META_TASK:
        return True  # the meta-evaluator's
    if await ctx.store.children(ev.id, {UtilityEvaluated.TYPE}):
        return True
    batch = make_event(
        ev.run_id,
        SandboxBatchRequested(task=p.task, split=p.split, solution=p.solution, seed=p.seed),
        cause=ev,
        key="batch",
    )
    await append_once(ctx.store, [batch])
    return True


async def on_batch_completed(ctx: AgentContext, ev: Event) -> bool:
    batch = await ctx.store.get(ev.causation_id or "")
    request = await ctx.store.get(batch.causation_id or "") if batch else None
    if batch is None or request is None:
        raise LookupError(f"batch result {ev.id} has no recorded request")
    if await ctx.store.children(request.id, {UtilityEvaluated.TYPE}):
        return True
    completed = ev.decode(SandboxBatchCompleted)
    scored = batch.decode(SandboxBatchRequested)
    raw = json.loads(await ctx.store.get_blob(completed.results))
    results = [JobResult.from_json(r) for r in raw]
    utility, detail, evaluation = fold_utility(scored.task, scored.split, results)
    detail["statuses"] = dict(completed.statuses)
    detail["violations"] = list(completed.violations)
    blobs: list[bytes] = []
    outcomes = None
    if evaluation is not None:
        data = json.dumps(evaluation.to_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")
        blobs.append(data)
        outcomes = sha256_hex(data)
        detail["invalid_outputs"] = sum(
            1 for o in evaluation.instances if o.error_kind in ("invalid", "invalid_output")
        )
    asked = request.decode(UtilityRequested)
    done = make_event(
        request.run_id,
        UtilityEvaluated(
            task=asked.task,
            split=asked.split,
            utility=float(utility),
            detail=detail,
            outcomes=outcomes,
        ),
        cause=request,
        key="result",
    )
    await append_once(ctx.store, [done], blobs=blobs)
    return True


async def run_evaluator(
    ctx: AgentContext, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    async def handle(ev: Event) -> bool:
        if ev.is_a(UtilityRequested):
            return await on_utility_requested(ctx, ev)
        return await on_batch_completed(ctx, ev)

    await serve(ctx, triggers(EVALUATOR), handle, limit=4, task_status=task_status)
