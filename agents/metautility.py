"""The meta-utility of an improver: run it on downstream tasks, average held-out utilities.

For a ``utility.requested`` on task "meta": one ``session.requested`` (purpose "meta_run") per
downstream task and run, each under a fresh LM and utility budget; each returned solution is
scored on the selection split (val) and the held-out split (test); a failed run counts 0. The
answer's ``utility`` is the mean on the requested split; ``detail`` has both and every run.
"""

from __future__ import annotations

from typing import Any

from agents.context import AgentContext
from agents.identity import seed_from
from agents.runinfo import RunInfo
from agents.steps import answer_of, ensure, put_text
from events import Event
from events.stop_events import SessionCompleted, SessionRequested, UtilityEvaluated, UtilityRequested
from tasks import get_task
from tasks.meta import meta_utility_value

__all__ = ("SPLITS", "progress_meta")

SPLITS = ("val", "test")


async def _downstream_run(
    ctx: AgentContext, info: RunInfo, request: Event, improver: str, task_name: str, r: int
) -> dict[str, Any] | None:
    """Run ``r`` of ``improver`` on ``task_name`` and both scores of what it returned (0 for a
    failed run); None while something is pending."""
    budget = info.config.meta_utility.improver
    seed_hash, seed_raw = put_text(get_task(task_name).seed_solution)
    session = await ensure(
        ctx,
        request.run_id,
        SessionRequested(
            purpose="meta_run",
            improver=improver,
            initial_solution=seed_hash,
            utility_task=task_name,
            lm_calls=budget.lm_calls,
            responses_per_call=budget.responses_per_call,
            utility_calls=budget.utility_calls,
            timeout_s=float(budget.timeout_s or info.config.session_timeout_s),
            seed=seed_from(request.id, task_name, r),
        ),
        cause=request,
        key=f"{task_name}/{r}",
        blobs=[seed_raw],
    )
    done = await answer_of(ctx, session)
    if done is None:
        return None
    outcome = done.decode(SessionCompleted)
    row: dict[str, Any] = {"task": task_name, "run": r, "status": outcome.status}
    if outcome.solution is None:
        return {**row, "val": 0.0, "test": 0.0}
    complete = True
    for split in SPLITS:
        ureq = await ensure(
            ctx,
            request.run_id,
            UtilityRequested(task=task_name, split=split, solution=outcome.solution, seed=seed_from(done.id, split)),
            cause=done,
            key=split,
        )
        ev = await answer_of(ctx, ureq)
        if ev is None:
            complete = False
        else:
            row[split] = ev.decode(UtilityEvaluated).utility
    return row if complete else None


async def progress_meta(ctx: AgentContext, request: Event) -> None:
    await ctx.runs.refreshed_view(request.run_id)
    if await answer_of(ctx, request):
        return
    asked = request.decode(UtilityRequested)
    info = await ctx.runs.info(request.run_id)
    mc = info.config.meta_utility
    # Every run is walked (their requests go out together); the answer waits for all of them.
    results = [
        await _downstream_run(ctx, info, request, asked.solution, task_name, r)
        for task_name in mc.tasks
        for r in range(mc.runs)
    ]
    runs = [row for row in results if row is not None]
    if len(runs) < len(results):
        return
    val = meta_utility_value([r["val"] for r in runs])
    test = meta_utility_value([r["test"] for r in runs])
    await ensure(
        ctx,
        request.run_id,
        UtilityEvaluated(
            task="meta",
            split=asked.split,
            utility=val if asked.split == "val" else test,
            detail={"val": val, "test": test, "runs": runs},
            outcomes=None,
        ),
        cause=request,
        key="result",
    )
