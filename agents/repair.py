"""The self-repair workflow (Olausson et al., ICLR 2024) as a re-entrant ``progress`` function.

For each HumanEval problem of the run (``options["problems"]``):

1. ``repair.problem`` (cause the root, key the task id).
2. One ``lm.requested`` with ``n = n_p`` (purpose "repair.sample"); each completion becomes a
   ``repair.program`` (kind "sample") and gets a check: ``utility.requested`` on
   "humaneval/<id>", split "check", caused by the program with key "check".
3. Once *every* sample is checked: if one passed the problem is solved (no repairs, unless
   ``full_tree``); otherwise each failing sample gets ``n_fr`` repairs:

   * joint (default): one request with ``n = n_fr`` (purpose "repair.joint") asking for an
     explanation of the failure then a fixed program;
   * separate (``separate_feedback``, implied by ``feedback_model``): ``n_fr`` explanations in one
     request (purpose "repair.feedback", on the feedback model) then one fix per explanation
     (purpose "repair.fix", on the main model).

   Each repair is a ``repair.program`` (kind "repair", cause and ``parent`` the failing program,
   ``feedback`` the explanation's blob, ``tokens`` explanation plus code) and is checked too.
4. When every problem is decided: ``run.finished`` with a per-problem summary.

Decisions read only complete sets of answers, so the tree is the same however the agents
interleave. Replies without code become a stub program that raises ``NotImplementedError("no
code in reply")``: it goes through the ordinary check (whose feedback then names the cause) and
can be repaired like any other failure.

The options are in ``agents.repair_options``, the steps (each answered from the run's view) in
``agents.repair_steps``, prompts and code extraction beside the task (``tasks.humaneval_prompts``,
``tasks.humaneval_extract``); this module holds the decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from agents.context import AgentContext
from agents.repair_options import DEFAULT_PROBLEMS, RepairOptions, resolve_problems
from agents.repair_steps import Check, RepairSteps
from agents.runinfo import RunInfo
from agents.steps import ensure, put_text
from events.stop_events import LMFailed, RepairProblemStarted, RepairProgram
from events.types import RunFinished
from tasks.humaneval import Problem, get_problem
from tasks.humaneval_extract import without_code
from tasks.humaneval_prompts import feedback_prompt, fix_prompt, joint_prompt, sample_prompt

__all__ = ("DEFAULT_PROBLEMS", "RepairOptions", "progress_repair", "resolve_problems")

log = structlog.get_logger("repair")


@dataclass
class _Problem:
    """What one call of the workflow learned about a problem (rebuilt from the log every time)."""

    task_id: str
    samples: list[Check] = field(default_factory=list)
    repairs: list[Check] = field(default_factory=list)
    lm_failures: int = 0
    result: dict[str, Any] | None = None  # set when the problem is decided

    def decide(self, solved_by_sample: bool) -> None:
        programs = self.samples + self.repairs
        by_repair = any(c.passed for c in self.repairs)
        self.result = {
            "problem": self.task_id,
            "solved": any(c.passed for c in programs),
            "solved_by": "sample" if solved_by_sample else ("repair" if by_repair else None),
            "programs": len(programs),
            "samples": len(self.samples),
            "repairs": len(self.repairs),
            "tokens": sum(c.program.decode(RepairProgram).tokens for c in programs),
            "lm_failures": self.lm_failures,
        }


class _Trees:
    """The decisions: which requests each problem's tree calls for, given what is answered."""

    def __init__(self, ctx: AgentContext, info: RunInfo) -> None:
        self.steps = RepairSteps(ctx, info)
        self.info = info
        self.opts = RepairOptions.from_dict(info.options)

    async def _repair(
        self, problem: Problem, failing: Check, j: int, reply: str, *, feedback: str, tokens: int
    ) -> Check:
        fb, fb_raw = put_text(feedback)
        return await self.steps.program(
            problem,
            failing.program,
            f"repair/{j}",
            reply,
            kind="repair",
            parent=failing.program.id,
            feedback=fb,
            tokens=tokens,
            blobs=(fb_raw,),
        )

    async def _joint_repairs(self, problem: Problem, failing: Check, src: str, state: _Problem) -> bool:
        """One request for ``n_fr`` explanation-and-fix replies; True once they are recorded."""
        req = await self.steps.ask(
            failing.program,
            "joint",
            joint_prompt(problem, src, failing.feedback),
            n=self.opts.n_fr,
            purpose="repair.joint",
            model=self.info.model,
        )
        ans, replies = await self.steps.replies(req)
        if ans is None:
            return False
        state.lm_failures += ans.type == LMFailed.TYPE
        for j, (text, tokens) in enumerate(replies):
            state.repairs.append(
                await self._repair(problem, failing, j, text, feedback=without_code(text), tokens=tokens)
            )
        return True

    async def _separate_repairs(self, problem: Problem, failing: Check, src: str, state: _Problem) -> bool:
        """``n_fr`` explanations (on the feedback model), then one fix per explanation; True once
        every fix is answered."""
        o = self.opts
        req = await self.steps.ask(
            failing.program,
            "feedback",
            feedback_prompt(problem, src, failing.feedback),
            n=o.n_fr,
            purpose="repair.feedback",
            model=o.feedback_model or self.info.model,
        )
        ans, explanations = await self.steps.replies(req)
        if ans is None:
            return False
        state.lm_failures += ans.type == LMFailed.TYPE
        complete = True
        seen: dict[str, int] = {}
        for j, (explanation, fb_tokens) in enumerate(explanations):
            prompt = fix_prompt(problem, src, failing.feedback, explanation)
            ordinal = seen.get(prompt, 0)  # identical fix prompts are distinct samples
            seen[prompt] = ordinal + 1
            fix = await self.steps.ask(
                failing.program, f"fix/{j}", prompt, n=1, purpose="repair.fix", model=self.info.model, ordinal=ordinal
            )
            fans, fixes = await self.steps.replies(fix)
            if fans is None:
                complete = False
                continue
            if fans.type == LMFailed.TYPE or not fixes:
                state.lm_failures += 1
                continue
            text, tokens = fixes[0]
            state.repairs.append(
                await self._repair(problem, failing, j, text, feedback=explanation, tokens=fb_tokens + tokens)
            )
        return complete

    async def _repairs_of(self, problem: Problem, failing: Check, state: _Problem) -> bool:
        """Request/record the repairs of one failing program; True once all are recorded."""
        src = await self.steps.text(failing.program.decode(RepairProgram).program)
        if self.opts.separate_feedback:
            return await self._separate_repairs(problem, failing, src, state)
        return await self._joint_repairs(problem, failing, src, state)

    async def problem(self, task_id: str) -> _Problem:
        o = self.opts
        problem = get_problem(task_id)
        state = _Problem(task_id)
        pev = await self.steps.ensure(
            RepairProblemStarted(problem=task_id, n_p=o.n_p, n_fr=o.n_fr), cause=self.info.root, key=task_id
        )
        req = await self.steps.ask(
            pev, "sample", sample_prompt(problem), n=o.n_p, purpose="repair.sample", model=self.info.model
        )
        ans, replies = await self.steps.replies(req)
        if ans is None:
            return state
        if ans.type == LMFailed.TYPE:
            state.lm_failures += 1
        for i, (text, tokens) in enumerate(replies):
            state.samples.append(
                await self.steps.program(
                    problem, pev, f"sample/{i}", text, kind="sample", parent=None, feedback=None, tokens=tokens
                )
            )
        if any(c.passed is None for c in state.samples):
            return state  # decisions wait for the complete set of checks
        solved_by_sample = any(c.passed for c in state.samples)
        complete = True
        if not solved_by_sample or o.full_tree:
            for failing in [c for c in state.samples if not c.passed]:
                complete = await self._repairs_of(problem, failing, state) and complete
        if complete and all(c.passed is not None for c in state.repairs):
            state.decide(solved_by_sample)
        return state


def _summary(opts: RepairOptions, info: RunInfo, rows: list[dict[str, Any]]) -> dict[str, Any]:
    solved = sum(1 for r in rows if r["solved"])
    return {
        "dataset": "humaneval",
        "n_p": opts.n_p,
        "n_fr": opts.n_fr,
        "mode": "separate" if opts.separate_feedback else "joint",
        "model": info.model,
        "feedback_model": opts.feedback_model or info.model,
        "full_tree": opts.full_tree,
        "problems": rows,
        "solved": solved,
        "pass_rate": solved / len(rows) if rows else 0.0,
        "tokens": sum(int(r["tokens"]) for r in rows),
        "programs": sum(int(r["programs"]) for r in rows),
    }


async def progress_repair(ctx: AgentContext, info: RunInfo) -> None:
    trees = _Trees(ctx, info)
    await ctx.runs.refreshed_view(info.root.run_id)
    # Every problem is walked on every call (their requests go out together), then the run ends
    # once all are decided.
    results = [(await trees.problem(task_id)).result for task_id in trees.opts.problems]
    rows = [r for r in results if r is not None]
    if len(rows) < len(results):
        return
    summary = _summary(trees.opts, info, rows)
    log.info("repair.finished", run_id=info.root.run_id, solved=summary["solved"], problems=len(rows))
    await ensure(ctx, info.root.run_id, RunFinished(summary=summary), cause=info.root, key="finished")
