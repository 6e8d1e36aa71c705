"""The run commands as workflows: pure decisions over the log, re-entrant and idempotent.

``progress(ctx, run_id)`` walks a run from its root, makes sure every event the facts so far
call for exists (appending the missing ones) and stops where it must wait for an answer. It
reads only events, never the clock, so calling it again — after a crash, in a second process,
during replay — makes the same decisions and appends nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
        ev = answer_of(ctx, req)
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
    return req, answer_of(ctx, req)


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


@dataclass
class _Lineage:
    """The STOP loop as the walk over the generations finds it: the current improver, its
    parent and meta-utility, and one summary row per generation so far."""

    improver: str
    parent: str | None = None
    meta: dict[str, float] | None = None  # the current improver's; known once the seed is scored
    rows: list[dict[str, Any]] = field(default_factory=list)

    def current_meta(self) -> dict[str, float]:
        if self.meta is None:
            raise RuntimeError("self-improve decided a generation before the seed improver was scored")
        return self.meta

    def seed(self, meta: dict[str, float]) -> None:
        self.meta = meta
        self.rows.append(
            {
                "generation": 0,
                "improver": self.improver,
                "meta_val": meta["val"],
                "meta_test": meta["test"],
                "adopted": True,
                "reason": "seed",
            }
        )

    def decided(self, g: int, candidate: str | None, meta: dict[str, float] | None, adopted: bool, reason: str) -> None:
        if adopted and candidate is not None and meta is not None:
            self.parent, self.improver, self.meta = self.improver, candidate, meta
        current = self.current_meta()
        self.rows.append(
            {
                "generation": g + 1,
                "improver": self.improver,
                "candidate": candidate,
                "candidate_meta_val": meta["val"] if meta else None,
                "candidate_meta_test": meta["test"] if meta else None,
                "meta_val": current["val"],
                "meta_test": current["test"],
                "adopted": adopted,
                "reason": reason,
            }
        )


async def _ask_meta(ctx: AgentContext, cause: Event, improver: str) -> Event:
    """The meta-utility request (on val; its answer carries test too) of ``improver``."""
    return await ensure(
        ctx,
        cause.run_id,
        UtilityRequested(task="meta", split="val", solution=improver, seed=seed_from(cause.id, "meta")),
        cause=cause,
        key="meta",
    )


async def _meta_of(ctx: AgentContext, request: Event) -> dict[str, float] | None:
    """Both meta-utilities of an answered ``_ask_meta`` request; None while it is pending."""
    answer = answer_of(ctx, request)
    if answer is None:
        return None
    detail = answer.decode(UtilityEvaluated).detail
    return {"val": detail["val"], "test": detail["test"]}


def _adoption(rule: str, meta: dict[str, float], current: dict[str, float]) -> tuple[bool, str]:
    """Whether a candidate with meta-utility ``meta`` replaces the current improver, and why."""
    if rule == "better":
        adopted = meta["val"] > current["val"]
        return adopted, "better on val" if adopted else "not better on val than the current improver"
    adopted = meta["val"] > 0
    return adopted, "did not fail and scored above 0" if adopted else "scored 0"


async def _verdict(
    ctx: AgentContext, rule: str, lineage: _Lineage, done: Event
) -> tuple[str | None, dict[str, float] | None, bool, str] | None:
    """(candidate, its meta-utility, adopted, why) for a generation's finished improver run;
    None while the candidate's meta-utility is pending."""
    outcome = done.decode(SessionCompleted)
    candidate = outcome.solution
    if candidate is None:
        return None, None, False, f"the improver run ended with {outcome.status}: {outcome.error[:200]}"
    meta = await _meta_of(ctx, await _ask_meta(ctx, done, candidate))
    if meta is None:
        return None
    return (candidate, meta, *_adoption(rule, meta, lineage.current_meta()))


async def _generation(
    ctx: AgentContext, info: RunInfo, lineage: _Lineage, g: int, cause: Event, blobs: list[bytes]
) -> Event | None:
    """Generation ``g``: the current improver improves itself, the candidate is scored and
    adopted or not. The ``improver.decided`` event, or None while an answer is pending.
    ``blobs`` (the seed improver's text, when no file recorded it) go in with the generation."""
    config = info.config
    improver = lineage.improver
    gen = await ensure(
        ctx,
        cause.run_id,
        GenerationStarted(generation=g, improver=improver, parent=lineage.parent),
        cause=cause,
        key=f"gen/{g}",
        blobs=blobs,
    )
    seed_request = await _ask_meta(ctx, gen, improver) if g == 0 else None
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
    if seed_request is not None:
        seed_meta = await _meta_of(ctx, seed_request)
        if seed_meta is None:
            return None
        lineage.seed(seed_meta)
    if done is None:
        return None
    verdict = await _verdict(ctx, config.adopt, lineage, done)
    if verdict is None:
        return None
    candidate, meta, adopted, reason = verdict
    decision = await ensure(
        ctx,
        cause.run_id,
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
    lineage.decided(g, candidate, meta, adopted, reason)
    return decision


async def progress_self_improve(ctx: AgentContext, info: RunInfo) -> None:
    improver, raw = _improver_source(info)
    lineage = _Lineage(improver=improver)
    cause: Event = info.root
    for g in range(info.config.generations):
        decision = await _generation(ctx, info, lineage, g, cause, [raw] if (g == 0 and raw) else [])
        if decision is None:
            return
        cause = decision
    await _finish(ctx, info, {"generations": lineage.rows, "final_improver": lineage.improver})


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
    if answer_of(ctx, info.root, RUN_ENDS):  # the run's end is in its view
        return
    flow = WORKFLOWS.get(info.command)
    if flow is None:
        raise LookupError(f"run {run_id} has unknown command {info.command!r}")
    await flow(ctx, info)
