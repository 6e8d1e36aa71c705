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

import ast
import re
import weakref
from collections import defaultdict
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
from events.stop_events import LMRequested, RepairProblemStarted, RepairProgram, UtilityRequested
from events.types import RunFinished
from lm import LMRequest, cache_key, extract_blocks
from store import ConflictError
from store.base import EventStore
from tasks.humaneval import Problem, get_problem, load_problems

__all__ = (
    "DEFAULT_PROBLEMS",
    "NO_CODE",
    "TEMPERATURE",
    "RepairOptions",
    "extract_program",
    "progress_repair",
    "resolve_problems",
)

log = structlog.get_logger("repair")

#: The study samples at temperature 0.8 everywhere (its repository's repair script defaults to
#: 0.5; we follow the paper).
TEMPERATURE = 0.8
#: Without ``--problems``: the first five HumanEval problems (a cheap default; "all" gives 164).
DEFAULT_PROBLEMS = 5
NO_CODE = "no code in reply"
_ANSWERS = {"lm.responded", "lm.failed"}
_SYSTEM = "You are an expert Python programmer."
_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)


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
                raise ValueError(
                    f"unknown HumanEval problem {part!r} (use HumanEval/0..HumanEval/{len(ids) - 1}, a number, or all)"
                )
            out.append(task_id)
    return list(dict.fromkeys(out))


# ---- code extraction -------------------------------------------------------------------------------


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


def _preamble(problem: Problem) -> str:
    """The prompt up to the entry point's ``def``: imports and helper functions it relies on."""
    m = re.search(rf"^(async\s+)?def\s+{re.escape(problem.entry_point)}\s*\(", problem.prompt, re.MULTILINE)
    return problem.prompt[: m.start()] if m else ""


def _as_body(code: str) -> str:
    """A completion of the prompt: indent it when the model wrote the body flush left."""
    lines = code.strip("\n").splitlines()
    if lines and not lines[0][:1].isspace():
        lines = [("    " + line) if line.strip() else line for line in lines]
    return "\n".join(lines) + "\n"


def _code_of(text: str) -> str | None:
    """Largest fenced Python block; else the largest fenced block at all (a syntax error is a
    legitimate failure); else the whole reply if it is Python; else ``None``."""
    blocks = extract_blocks(text)
    if blocks:
        return max(blocks, key=len)
    raw = [m.group(1) for m in _FENCE.finditer(text) if m.group(1).strip()]
    if raw:
        return max(raw, key=len)
    return text if text.strip() else None


def extract_program(problem: Problem, text: str) -> str | None:
    """The full program an LM reply stands for, or ``None`` when the reply holds no code.

    * a program defining the entry point is kept, with the prompt's preamble (imports, helper
      functions) put in front unless it is already there;
    * a function body (what a completion model writes) completes the prompt;
    * unfenced text counts as code only if it parses, alone or as a body of the prompt;
    * anything else fenced is kept as is, so the check reports its error.
    """
    code = _code_of(text)
    if code is None:
        return None
    fenced = code is not text
    code = code.strip("\n") + "\n"
    if _defines(code, problem.entry_point):
        pre = _preamble(problem)
        return code if not pre.strip() or pre.strip() in code else pre.rstrip("\n") + "\n\n" + code
    completed = problem.complete(_as_body(code))
    if _parses(completed) and _defines(completed, problem.entry_point):
        return completed
    if fenced or _parses(code):
        return code
    return None


def no_code_program(problem: Problem) -> str:
    """The stub recorded for a reply without code: it fails its check, naming the cause."""
    return problem.complete(f"    raise NotImplementedError({NO_CODE!r})\n")


def _without_code(text: str) -> str:
    """The explanation part of a joint reply: the text with fenced blocks removed."""
    prose = _FENCE.sub("", text).strip()
    return prose or text.strip()


# ---- prompts -------------------------------------------------------------------------------------


def sample_prompt(problem: Problem) -> str:
    return (
        "Complete the following Python function so that it satisfies its docstring. Reply with the "
        "complete function (its signature and any imports it needs) in a single ```python code block.\n\n"
        f"```python\n{problem.prompt.rstrip()}\n```\n"
    )


def _failure(program: str, feedback: str) -> str:
    # The failing program comes first: it is what is to be fixed (and the offline model mutates
    # the first fenced program of a prompt).
    return (
        "### Incorrect program\n"
        f"```python\n{program.rstrip()}\n```\n\n"
        "### Error\n"
        f"The program fails the tests with: {feedback}\n\n"
    )


def _spec(problem: Problem) -> str:
    return f"### Specification\n```python\n{problem.prompt.rstrip()}\n```\n\n"


def joint_prompt(problem: Problem, program: str, feedback: str) -> str:
    return (
        _failure(program, feedback)
        + _spec(problem)
        + "First explain in a few sentences what is wrong with the incorrect program. Then write the "
        "fixed, complete program in a single ```python code block.\n"
    )


def feedback_prompt(problem: Problem, program: str, feedback: str) -> str:
    return (
        _failure(program, feedback)
        + _spec(problem)
        + "Explain in a few sentences what is wrong with the incorrect program and how to fix it. "
        "Do not write any code.\n"
    )


def fix_prompt(problem: Problem, program: str, feedback: str, explanation: str) -> str:
    return (
        _failure(program, feedback) + _spec(problem) + f"### Explanation of the failure\n{explanation.strip()}\n\n"
        "Write the fixed, complete program in a single ```python code block.\n"
    )


# ---- the workflow ----------------------------------------------------------------------------------

_VIEW_TYPES = frozenset(
    {
        "run.started",
        "repair.problem",
        "repair.program",
        "lm.requested",
        "lm.responded",
        "lm.failed",
        "utility.requested",
        "utility.evaluated",
    }
)


class _RunView:
    """An in-memory index of a run's repair events, caught up incrementally from the log.

    The workflow walks every problem on each call; with 164 problems, point queries per step
    would make a run quadratic in store round trips. The log is append-only and its ``seq``
    follows commit order, so reading only what came after the last seen ``seq`` keeps the index
    exact as of the call's start (any later answer triggers another call). Events this process
    appends are indexed at once but never advance ``last_seq``, so nothing committed by others
    is skipped. Blobs are content-addressed, hence cached without invalidation.
    """

    def __init__(self) -> None:
        self.last_seq = 0
        self.by_id: dict[str, Event] = {}
        self.kids: defaultdict[str | None, list[Event]] = defaultdict(list)
        self.blobs: dict[str, str] = {}

    def add(self, ev: Event) -> None:
        if ev.id not in self.by_id:
            self.by_id[ev.id] = ev
            self.kids[ev.causation_id].append(ev)

    def getter(self, store: EventStore) -> _ViewGet:
        return _ViewGet(self, store)

    async def refresh(self, store: EventStore, run_id: str) -> None:
        for ev in await store.read(run_id, after=self.last_seq, types=_VIEW_TYPES):
            self.add(ev)
            self.last_seq = max(self.last_seq, ev.seq or 0)


class _ViewGet:
    """The ``get`` that ``agents.identity.lm_namespace`` needs, served from the view when it can."""

    def __init__(self, view: _RunView, store: EventStore) -> None:
        self.view, self.store = view, store

    async def get(self, event_id: str) -> Event | None:
        return self.view.by_id.get(event_id) or await self.store.get(event_id)


#: Views per live store object (weak: a closed and collected store takes its views with it).
_VIEWS: weakref.WeakKeyDictionary[Any, dict[str, _RunView]] = weakref.WeakKeyDictionary()


def _view(store: EventStore, run_id: str) -> _RunView:
    return _VIEWS.setdefault(store, {}).setdefault(run_id, _RunView())


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
        self.view = _view(ctx.store, self.run_id)

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
        found = [e for e in self.view.kids.get(request.id, []) if e.type in types]
        return min(found, key=lambda e: e.seq or 0) if found else None

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
            messages=({"role": "system", "content": _SYSTEM}, {"role": "user", "content": prompt}),
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
        ans = self.answer_of(request, _ANSWERS)
        if ans is None or ans.type == "lm.failed":
            return ans, []
        out = []
        for c in ans.payload["completions"]:
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
        done = self.answer_of(req, {"utility.evaluated"})
        if done is not None:
            check.passed = done.payload["utility"] >= 1.0
            check.feedback = str(done.payload["detail"].get("feedback", ""))
        return check

    async def _repairs_of(self, problem: Problem, failing: _Check, state: _Problem) -> bool:
        """Request/record the repairs of one failing program; True once all are recorded."""
        o = self.opts
        src = await self.text(failing.program.payload["program"])
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
            state.lm_failures += ans.type == "lm.failed"
            for j, (text, tokens) in enumerate(replies):
                fb, fb_raw = put_text(_without_code(text))
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
        state.lm_failures += ans.type == "lm.failed"
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
            if fans.type == "lm.failed" or not fixes:
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
        if ans.type == "lm.failed":
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
            "tokens": sum(int(c.program.payload["tokens"]) for c in programs),
            "lm_failures": state.lm_failures,
        }
        return state


async def progress_repair(ctx: AgentContext, info: RunInfo) -> None:
    flow = _Flow(ctx, info)
    await flow.view.refresh(ctx.store, info.root.run_id)
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
