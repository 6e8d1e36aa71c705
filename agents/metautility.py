"""The meta-utility of an improver: run it on downstream tasks, average held-out utilities.

For a ``utility.requested`` on task "meta": one ``session.requested`` (purpose "meta_run") per
downstream task and run, each under a fresh LM and utility budget; each returned solution is
scored on the selection split (val) and the held-out split (test); a failed run counts 0. The
answer's ``utility`` is the mean on the requested split; ``detail`` has both and every run.

Every trigger walks the request's runs again, but only those still pending: what earlier walks
established is in the request's tally (``agents.meta_tally``), so a walk costs in proportion to
what can have changed.
"""

from __future__ import annotations

import functools
from typing import Any

from agents.context import AgentContext
from agents.identity import seed_from
from agents.meta_tally import MetaTally, RunKey
from agents.runinfo import RunInfo
from agents.steps import answer_of, ensure, put_text
from events import Event
from events.stop_events import SessionCompleted, SessionRequested, UtilityEvaluated, UtilityRequested
from tasks import get_task
from tasks.meta import meta_utility_value

__all__ = ("SPLITS", "progress_meta")

SPLITS = ("val", "test")


@functools.cache
def _seed_text(task_name: str) -> tuple[str, bytes]:
    """A task's seed solution (hash, bytes): a fixed definition, so memoised process-wide."""
    return put_text(get_task(task_name).seed_solution)


async def _session(ctx: AgentContext, info: RunInfo, tally: MetaTally, request: Event, run: RunKey) -> Event:
    known = tally.sessions.get(run)
    if known is not None:
        return known
    task_name, r = run
    budget = info.config.meta_utility.improver
    seed_hash, seed_raw = _seed_text(task_name)
    session = await ensure(
        ctx,
        request.run_id,
        SessionRequested(
            purpose="meta_run",
            improver=request.decode(UtilityRequested).solution,
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
    tally.sessions[run] = session
    return session


async def _score_request(ctx: AgentContext, tally: MetaTally, done: Event, run: RunKey, split: str) -> Event:
    known = tally.scores.get((run, split))
    if known is not None:
        return known
    solution = done.decode(SessionCompleted).solution
    assert solution is not None
    ureq = await ensure(
        ctx,
        done.run_id,
        UtilityRequested(task=run[0], split=split, solution=solution, seed=seed_from(done.id, split)),
        cause=done,
        key=split,
    )
    tally.scores[(run, split)] = ureq
    return ureq


async def _downstream_run(
    ctx: AgentContext, info: RunInfo, tally: MetaTally, request: Event, run: RunKey
) -> dict[str, Any] | None:
    """Run ``run`` (task, index) of the requested improver and both scores of what it returned
    (0 for a failed run); None while something is pending."""
    session = await _session(ctx, info, tally, request, run)
    done = answer_of(ctx, session)
    if done is None:
        return None
    outcome = done.decode(SessionCompleted)
    row: dict[str, Any] = {"task": run[0], "run": run[1], "status": outcome.status}
    if outcome.solution is None:
        return {**row, "val": 0.0, "test": 0.0}
    complete = True
    for split in SPLITS:
        ev = answer_of(ctx, await _score_request(ctx, tally, done, run, split))
        if ev is None:
            complete = False
        else:
            row[split] = ev.decode(UtilityEvaluated).utility
    return row if complete else None


async def progress_meta(ctx: AgentContext, request: Event) -> None:
    """Append what the meta-utility ``request`` now calls for. The caller has refreshed the
    run's view for this trigger (``RunMemory.refreshed_view``)."""
    if answer_of(ctx, request):
        return
    asked = request.decode(UtilityRequested)
    info = await ctx.runs.info(request.run_id)
    mc = info.config.meta_utility
    view = ctx.runs.view(request.run_id)
    tally = view.meta_tallies.setdefault(request.id, MetaTally())
    grid = [(task_name, r) for task_name in mc.tasks for r in range(mc.runs)]
    # Every run is walked (their requests go out together); the answer waits for all of them.
    for run in grid:
        if run not in tally.rows:
            row = await _downstream_run(ctx, info, tally, request, run)
            if row is not None:
                tally.rows[run] = row
    if len(tally.rows) < len(grid):
        return
    runs = [tally.rows[run] for run in grid]
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
