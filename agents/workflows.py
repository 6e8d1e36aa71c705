"""The run commands as workflows: pure decisions over the log, re-entrant and idempotent.

``progress(ctx, run_id)`` walks a run from its root, makes sure every event the facts so far
call for exists (appending the missing ones) and stops where it must wait for an answer. It
reads only events, never the clock, so calling it again — after a crash, in a second process,
during replay — makes the same decisions and appends nothing twice.
"""

from __future__ import annotations

from typing import Any

from agents import transfer
from agents.context import AgentContext
from agents.identity import seed_from
from agents.metautility import SPLITS
from agents.repair import progress_repair
from agents.runinfo import RunInfo
from agents.steps import answer_of, ensure, put_text
from events import Event
from events.routing import RUN_ENDS
from events.stop_events import (
    GenerationStarted,
    ImproverDecided,
    SessionCompleted,
    SessionRequested,
    UtilityEvaluated,
    UtilityRequested,
)
from events.types import RunFinished
from tasks import get_task
from tasks.meta import SEED_IMPROVER

__all__ = ("WORKFLOWS", "progress")


def _improver_source(info: RunInfo, key: str = "improver") -> tuple[str, bytes | None]:
    digest = info.options.get(key)
    if digest:
        return str(digest), None
    return put_text(SEED_IMPROVER)


async def _scores(
    ctx: AgentContext,
    run_id: str,
    cause: Event,
    solution: str,
    task: str,
    prefix: str,
    blobs: list[bytes] | None = None,
) -> dict[str, float] | None:
    """Request val and test utilities of ``solution``; their values once all are answered.

    ``blobs`` (the solution's text when nothing recorded it yet) go in with the first request."""
    out: dict[str, float] = {}
    for split in SPLITS:
        req = await ensure(
            ctx,
            run_id,
            UtilityRequested(task=task, split=split, solution=solution, seed=seed_from(cause.id, prefix, split)),
            cause=cause,
            key=f"{prefix}{split}",
            blobs=blobs or [],
        )
        ev = await answer_of(ctx, req)
        if ev is not None:
            out[split] = ev.decode(UtilityEvaluated).utility
    return out if len(out) == len(SPLITS) else None


async def _session(
    ctx: AgentContext,
    info: RunInfo,
    cause: Event,
    key: str,
    *,
    purpose: str,
    improver: str,
    initial: str,
    utility_task: str,
    utility_calls: int | None = None,
    blobs: list[bytes] | None = None,
) -> tuple[Event, Event | None]:
    b = info.config.improver
    req = await ensure(
        ctx,
        info.root.run_id,
        SessionRequested(
            purpose=purpose,
            improver=improver,
            initial_solution=initial,
            utility_task=utility_task,
            lm_calls=b.lm_calls,
            responses_per_call=b.responses_per_call,
            utility_calls=utility_calls if utility_calls is not None else b.utility_calls,
            timeout_s=float(b.timeout_s or info.config.session_timeout_s),
            seed=seed_from(cause.id, key),
        ),
        cause=cause,
        key=key,
        blobs=blobs or [],
    )
    return req, await answer_of(ctx, req)


async def _finish(ctx: AgentContext, info: RunInfo, summary: dict[str, Any]) -> None:
    await ensure(ctx, info.root.run_id, RunFinished(summary=summary), cause=info.root, key="finished")


# ---- stop improve --------------------------------------------------------------------------------


async def progress_improve(ctx: AgentContext, info: RunInfo) -> None:
    task = get_task(info.options["task"])
    root = info.root
    improver, improver_raw = _improver_source(info)
    solution, solution_raw = put_text(task.seed_solution)
    before = await _scores(ctx, root.run_id, root, solution, task.name, "before/", blobs=[solution_raw])
    _, done = await _session(
        ctx,
        info,
        root,
        "improve",
        purpose="improve",
        improver=improver,
        initial=solution,
        utility_task=task.name,
        blobs=[improver_raw] if improver_raw else [],
    )
    if done is None:
        return
    outcome = done.decode(SessionCompleted)
    if outcome.solution is None:
        after: dict[str, float] | None = {"val": 0.0, "test": 0.0}
    else:
        after = await _scores(ctx, root.run_id, done, outcome.solution, task.name, "after/")
    if before is None or after is None:
        return
    await _finish(
        ctx,
        info,
        {
            "task": task.name,
            "improver": improver,
            "session_status": outcome.status,
            "solution": outcome.solution,
            "before": before,
            "after": after,
        },
    )


# ---- stop self-improve ---------------------------------------------------------------------------


async def progress_self_improve(ctx: AgentContext, info: RunInfo) -> None:
    root = info.root
    run_id = root.run_id
    config = info.config
    improver, raw = _improver_source(info)
    parent: str | None = None
    cause: Event = root
    current_meta: dict[str, float] | None = None
    rows: list[dict[str, Any]] = []
    for g in range(config.generations):
        gen = await ensure(
            ctx,
            run_id,
            GenerationStarted(generation=g, improver=improver, parent=parent),
            cause=cause,
            key=f"gen/{g}",
            blobs=[raw] if (g == 0 and raw) else [],
        )
        if g == 0:
            base = await ensure(
                ctx,
                run_id,
                UtilityRequested(task="meta", split="val", solution=improver, seed=seed_from(gen.id, "meta")),
                cause=gen,
                key="meta",
            )
        _, done = await _session(
            ctx,
            info,
            gen,
            "generation",
            purpose="generation",
            improver=improver,
            initial=improver,
            utility_task="meta",
            utility_calls=config.meta_utility.meta_utility_budget,
        )
        if g == 0:
            base_ev = await answer_of(ctx, base)
            if base_ev is None:
                return
            base_detail = base_ev.decode(UtilityEvaluated).detail
            current_meta = {"val": base_detail["val"], "test": base_detail["test"]}
            rows.append(
                {
                    "generation": 0,
                    "improver": improver,
                    "meta_val": current_meta["val"],
                    "meta_test": current_meta["test"],
                    "adopted": True,
                    "reason": "seed",
                }
            )
        if done is None:
            return
        assert current_meta is not None
        outcome = done.decode(SessionCompleted)
        candidate = outcome.solution
        meta: dict[str, float] | None = None
        if candidate is None:
            adopted, reason = (False, f"the improver run ended with {outcome.status}: {outcome.error[:200]}")
        else:
            mreq = await ensure(
                ctx,
                run_id,
                UtilityRequested(task="meta", split="val", solution=candidate, seed=seed_from(done.id, "meta")),
                cause=done,
                key="meta",
            )
            mev = await answer_of(ctx, mreq)
            if mev is None:
                return
            meta_detail = mev.decode(UtilityEvaluated).detail
            meta = {"val": meta_detail["val"], "test": meta_detail["test"]}
            if config.adopt == "better":
                adopted = meta["val"] > current_meta["val"]
                reason = "better on val" if adopted else "not better on val than the current improver"
            else:
                adopted = meta["val"] > 0
                reason = "did not fail and scored above 0" if adopted else "scored 0"
        dec = await ensure(
            ctx,
            run_id,
            ImproverDecided(
                generation=g,
                candidate=candidate,
                parent=improver,
                adopted=adopted,
                reason=reason,
                meta_val=meta["val"] if meta else None,
                meta_test=meta["test"] if meta else None,
            ),
            cause=gen,
            key="decision",
        )
        if adopted and candidate is not None and meta is not None:
            parent, improver, current_meta = improver, candidate, meta
        rows.append(
            {
                "generation": g + 1,
                "improver": improver,
                "candidate": candidate,
                "candidate_meta_val": meta["val"] if meta else None,
                "candidate_meta_test": meta["test"] if meta else None,
                "meta_val": current_meta["val"],
                "meta_test": current_meta["test"],
                "adopted": adopted,
                "reason": reason,
            }
        )
        cause = dec
    await _finish(ctx, info, {"generations": rows, "final_improver": improver})


# ---- stop transfer -------------------------------------------------------------------------------


async def progress_transfer(ctx: AgentContext, info: RunInfo) -> None:
    root = info.root
    improved, _ = _improver_source(info)
    seed_improver, seed_raw = put_text(SEED_IMPROVER)
    n_runs = int(info.options.get("runs") or 1)
    rows: list[dict[str, Any]] = []
    complete = True
    for name in info.options["tasks"]:
        task = get_task(name)
        solution, solution_raw = put_text(task.seed_solution)
        runs: dict[str, list[dict[str, Any]]] = {column: [] for column in transfer.COLUMNS}
        for r in range(n_runs):
            run = "" if r == 0 else f"/{r}"  # run 0 keeps the keys of single-run transfers
            seed_scores = await _scores(
                ctx, root.run_id, root, solution, name, f"{name}/seed{run}/", blobs=[solution_raw]
            )
            if seed_scores is None:
                complete = False
            else:
                runs["seed_solution"].append(seed_scores)
            for label, improver in (("seed_improver", seed_improver), ("improved_improver", improved)):
                _, done = await _session(
                    ctx,
                    info,
                    root,
                    f"{name}/{label}{run}",
                    purpose="improve",
                    improver=improver,
                    initial=solution,
                    utility_task=name,
                    blobs=[seed_raw] if improver == seed_improver else [],
                )
                if done is None:
                    complete = False
                    continue
                outcome = done.decode(SessionCompleted)
                if outcome.solution is None:
                    runs[label].append({"val": 0.0, "test": 0.0, "status": outcome.status})
                    continue
                scores = await _scores(ctx, root.run_id, done, outcome.solution, name, "")
                if scores is None:
                    complete = False
                else:
                    runs[label].append(scores)
        if complete:
            rows.append(transfer.transfer_row(name, runs))
    if complete:
        recorded_before_runs = "runs" not in info.options
        await _finish(
            ctx,
            info,
            transfer.single_run_summary(improved, rows)
            if recorded_before_runs
            else transfer.summary(improved, n_runs, rows),
        )


WORKFLOWS = {
    "improve": progress_improve,
    "self-improve": progress_self_improve,
    "transfer": progress_transfer,
    "repair": progress_repair,
}


async def progress(ctx: AgentContext, run_id: str) -> None:
    info = await ctx.runs.info(run_id)
    await ctx.runs.refreshed_view(run_id)
    if await ctx.store.children(info.root.id, RUN_ENDS):
        return
    flow = WORKFLOWS.get(info.command)
    if flow is None:
        raise LookupError(f"run {run_id} has unknown command {info.command!r}")
    await flow(ctx, info)
