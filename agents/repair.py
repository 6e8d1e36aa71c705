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
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from agents.context import AgentContext
from agents.identity import lm_namespace, seed_from
from agents.runinfo import RunInfo
from agents.steps import ensure, put_text
from agents.tasks_view import HUMANEVAL_PREFIX
from events import Event, make_event
from events.registry import Payload
from events.routing import LM_ANSWERS
from events.stop_events import (
    LMFailed,
    LMRequested,
    LMResponded,
    RepairProblemStarted,
    RepairProgram,
    UtilityEvaluated,
    UtilityRequested,
)
from events.types import RunFinished
from lm import LMRequest, cache_key
from outcome import UsageError
from store import ConflictError
from tasks.humaneval import Problem, get_problem, load_problems
from tasks.humaneval_extract import extract_program, no_code_program, without_code
from tasks.humaneval_prompts import SYSTEM, TEMPERATURE, feedback_prompt, fix_prompt, joint_prompt, sample_prompt

__all__ = ("DEFAULT_PROBLEMS", "RepairOptions", "progress_repair", "resolve_problems")

log = structlog.get_logger("repair")

#: Without ``--problems``: the first five HumanEval problems (a cheap default; "all" gives 164).
DEFAULT_PROBLEMS = 5


# ---- options --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepairOptions:
    problems: list[str]
    n_p: int = 5
    n_fr: int = 3
    feedback_model: str | None = None
    separate_feedback: bool = False
    full_tree: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepairOptions:
        problems = data.get("problems") or resolve_problems(None)
        return cls(
            problems=list(problems),
            n_p=int(data.get("n_p", 5)),
            n_fr=int(data.get("n_fr", 3)),
            feedback_model=data.get("feedback_model") or None,
            separate_feedback=bool(data.get("separate_feedback")) or bool(data.get("feedback_model")),
            full_tree=bool(data.get("full_tree")),
        )


def resolve_problems(specs: list[str] | None) -> list[str]:
    """Task ids from ``HumanEval/3``, ``3`` or ``all``; default the first ``DEFAULT_PROBLEMS``."""
    ids = [p.task_id for p in load_problems()]
    if not specs:
        return ids[:DEFAULT_PROBLEMS]
    out: list[str] = []
    for spec in specs:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if part.lower() == "all":
                out.extend(ids)
                continue
            task_id = f"HumanEval/{part}" if part.isdigit() else part
            if task_id not in ids:
                raise UsageError(
                    f"unknown HumanEval problem {part!r} (use HumanEval/0..HumanEval/{len(ids) - 1}, a number, or all)"
                )
            out.append(task_id)
    return list(dict.fromkeys(out))


# ---- the workflow ----------------------------------------------------------------------------------


@dataclass
class _Check:
    program: Event
    passed: bool | None = None  # None: not answered yet
    feedback: str = ""


@dataclass
class _Problem:
    """What one call of the workflow learned about a problem (rebuilt from the log every time)."""

    task_id: str
    samples: list[_Check] = field(default_factory=list)
    repairs: list[_Check] = field(default_factory=list)
    lm_failures: int = 0
    result: dict[str, Any] | None = None  # set when the problem is decided


class _Flow:
    def __init__(self, ctx: AgentContext, info: RunInfo) -> None:
        self.ctx = ctx
        self.info = info
        self.run_id = info.root.run_id
        self.opts = RepairOptions.from_dict(info.options)
        self.view = ctx.runs.view(self.run_id)

    async def ensure(self, data: Payload, *, cause: Event, key: str, blobs: Sequence[bytes] = ()) -> Event:
        """``agents.steps.ensure`` that skips the store when the view already holds the event."""
        ev = make_event(self.run_id, data, cause=cause, key=key)
        known = self.view.by_id.get(ev.id)
        if known is not None:
            if not known.same_content(ev):
                raise ConflictError(f"{ev.type} {ev.id} was recorded differently before; decisions diverged")
            return known
        stored = await ensure(self.ctx, self.run_id, data, cause=cause, key=key, blobs=blobs)
        self.view.add(stored)
        return stored

    def answer_of(self, request: Event, types: Collection[str]) -> Event | None:
        return self.view.answer(request.id, types)

    async def text(self, digest: str) -> str:
        if digest not in self.view.blobs:
            self.view.blobs[digest] = (await self.ctx.store.get_blob(digest)).decode("utf-8")
        return self.view.blobs[digest]

    async def _lm(
        self, cause: Event, key: str, prompt: str, *, n: int, purpose: str, model: str, ordinal: int = 0
    ) -> Event:
        namespace = await lm_namespace(self.view.getter(self.ctx.store), cause, self.info.seed)  # type: ignore[arg-type]  # the view getter satisfies the store-read protocol
        req = LMRequest(
            model=model,
            messages=({"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}),
            temperature=TEMPERATURE,
            max_tokens=self.info.config.max_tokens,
            n=n,
            seed=seed_from(namespace, key),
        )
        return await self.ensure(
            LMRequested(
                request=req.canonical(),
                namespace=namespace,
                ordinal=ordinal,
                cache_key=cache_key(req, ordinal, namespace),
                purpose=purpose,
            ),
            cause=cause,
            key=key,
        )

    async def _replies(self, request: Event) -> tuple[Event | None, list[tuple[str, int]]]:
        """The answer (None while pending) and its completions as (text, completion tokens)."""
        ans = self.answer_of(request, LM_ANSWERS)
        if ans is None or ans.type == LMFailed.TYPE:
            return ans, []
        out = []
        for c in ans.decode(LMResponded).completions:
            out.append((await self.text(c["text"]), int(c.get("completion_tokens") or 0)))
        return ans, out

    async def _program(
        self,
        problem: Problem,
        cause: Event,
        key: str,
        reply: str,
        *,
        kind: str,
        parent: str | None,
        feedback: str | None,
        tokens: int,
        blobs: tuple[bytes, ...] = (),
    ) -> _Check:
        text = extract_program(problem, reply)
        if text is None:
            text = no_code_program(problem)
        digest, raw = put_text(text)
        ev = await self.ensure(
            RepairProgram(
                problem=problem.task_id, kind=kind, program=digest, parent=parent, feedback=feedback, tokens=tokens
            ),
            cause=cause,
            key=key,
            blobs=[raw, *blobs],
        )
        req = await self.ensure(
            UtilityRequested(
                task=HUMANEVAL_PREFIX + problem.task_id, split="check", solution=digest, seed=seed_from(ev.id, "check")
            ),
            cause=ev,
            key="check",
        )
        check = _Check(ev)
        done = self.answer_of(req, {UtilityEvaluated.TYPE})
        if done is not None:
            result = done.decode(UtilityEvaluated)
            check.passed = result.utility >= 1.0
            check.feedback = str(result.detail.get("feedback", ""))
        return check

    async def _repairs_of(self, problem: Problem, failing: _Check, state: _Problem) -> bool:
        """Request/record the repairs of one failing program; True once all are recorded."""
        o = self.opts
        src = await self.text(failing.program.decode(RepairProgram).program)
        main = self.info.model
        if not o.separate_feedback:
            req = await self._lm(
                failing.program,
                "joint",
                joint_prompt(problem, src, failing.feedback),
                n=o.n_fr,
                purpose="repair.joint",
                model=main,
            )
            ans, replies = await self._replies(req)
            if ans is None:
                return False
            state.lm_failures += ans.type == LMFailed.TYPE
            for j, (text, tokens) in enumerate(replies):
                fb, fb_raw = put_text(without_code(text))
                state.repairs.append(
                    await self._program(
                        problem,
                        failing.program,
                        f"repair/{j}",
                        text,
                        kind="repair",
                        parent=failing.program.id,
                        feedback=fb,
                        tokens=tokens,
                        blobs=(fb_raw,),
                    )
                )
            return True
        req = await self._lm(
            failing.program,
            "feedback",
            feedback_prompt(problem, src, failing.feedback),
            n=o.n_fr,
            purpose="repair.feedback",
            model=o.feedback_model or main,
        )
        ans, explanations = await self._replies(req)
        if ans is None:
            return False
        state.lm_failures += ans.type == LMFailed.TYPE
        complete = True
        seen: dict[str, int] = {}
        for j, (explanation, fb_tokens) in enumerate(explanations):
            prompt = fix_prompt(problem, src, failing.feedback, explanation)
            ordinal = seen.get(prompt, 0)  # identical fix prompts are distinct samples
            seen[prompt] = ordinal + 1
            fix = await self._lm(
                failing.program, f"fix/{j}", prompt, n=1, purpose="repair.fix", model=main, ordinal=ordinal
            )
            fans, fixes = await self._replies(fix)
            if fans is None:
                complete = False
                continue
            if fans.type == LMFailed.TYPE or not fixes:
                state.lm_failures += 1
                continue
            fb, fb_raw = put_text(explanation)
            text, tokens = fixes[0]
            state.repairs.append(
                await self._program(
                    problem,
                    failing.program,
                    f"repair/{j}",
                    text,
                    kind="repair",
                    parent=failing.program.id,
                    feedback=fb,
                    tokens=fb_tokens + tokens,
                    blobs=(fb_raw,),
                )
            )
        return complete

    async def problem(self, task_id: str) -> _Problem:
        o = self.opts
        problem = get_problem(task_id)
        state = _Problem(task_id)
        root = self.info.root
        pev = await self.ensure(RepairProblemStarted(problem=task_id, n_p=o.n_p, n_fr=o.n_fr), cause=root, key=task_id)
        req = await self._lm(
            pev, "sample", sample_prompt(problem), n=o.n_p, purpose="repair.sample", model=self.info.model
        )
        ans, replies = await self._replies(req)
        if ans is None:
            return state
        if ans.type == LMFailed.TYPE:
            state.lm_failures += 1
        for i, (text, tokens) in enumerate(replies):
            state.samples.append(
                await self._program(
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
        if not complete or any(c.passed is None for c in state.repairs):
            return state
        programs = state.samples + state.repairs
        state.result = {
            "problem": task_id,
            "solved": any(c.passed for c in programs),
            "solved_by": "sample" if solved_by_sample else ("repair" if any(c.passed for c in state.repairs) else None),
            "programs": len(programs),
            "samples": len(state.samples),
            "repairs": len(state.repairs),
            "tokens": sum(c.program.decode(RepairProgram).tokens for c in programs),
            "lm_failures": state.lm_failures,
        }
        return state


async def progress_repair(ctx: AgentContext, info: RunInfo) -> None:
    flow = _Flow(ctx, info)
    await ctx.runs.refreshed_view(info.root.run_id)
    o = flow.opts
    rows = []
    for task_id in o.problems:
        state = await flow.problem(task_id)
        rows.append(state.result)
    if any(r is None for r in rows):
        return
    solved = sum(1 for r in rows if r and r["solved"])
    summary = {
        "dataset": "humaneval",
        "n_p": o.n_p,
        "n_fr": o.n_fr,
        "mode": "separate" if o.separate_feedback else "joint",
        "model": info.model,
        "feedback_model": o.feedback_model or info.model,
        "full_tree": o.full_tree,
        "problems": rows,
        "solved": solved,
        "pass_rate": solved / len(rows) if rows else 0.0,
        "tokens": sum(int(r["tokens"]) for r in rows if r),
        "programs": sum(int(r["programs"]) for r in rows if r),
    }
    log.info("repair.finished", run_id=info.root.run_id, solved=solved, problems=len(rows))
    await ensure(ctx, info.root.run_id, RunFinished(summary=summary), cause=info.root, key="finished")
