"""The steps the self-repair workflow takes, each against the run's view (``ctx.runs``).

A self-repair run walks up to 164 problem trees again on every trigger, so each step answers
from the view when it can: making sure an event exists, finding the answer to a request,
reading a blob, asking the model, recording a program and its check. The decisions over these
steps are in ``agents.repair``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.context import AgentContext
from agents.identity import lm_namespace, seed_from
from agents.runinfo import RunInfo
from agents.steps import ensure, put_text
from agents.tasks_view import HUMANEVAL_PREFIX
from events import Event, make_event
from events.registry import Payload
from events.routing import answer_types
from events.stop_events import LMFailed, LMRequested, LMResponded, RepairProgram, UtilityEvaluated, UtilityRequested
from lm import LMRequest, cache_key
from store import ConflictError
from tasks.humaneval import Problem
from tasks.humaneval_extract import extract_program, no_code_program
from tasks.humaneval_prompts import SYSTEM, TEMPERATURE

__all__ = ("Check", "RepairSteps")


@dataclass
class Check:
    """A program of a repair tree and what its check said."""

    program: Event
    passed: bool | None = None  # None: not answered yet
    feedback: str = ""


class RepairSteps:
    def __init__(self, ctx: AgentContext, info: RunInfo) -> None:
        self.ctx = ctx
        self.info = info
        self.run_id = info.root.run_id
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

    def answer_of(self, request: Event) -> Event | None:
        """The answer to ``request`` the view holds (of a type ``events.routing`` declares)."""
        return self.view.answer(request.id, answer_types(request.type))

    async def text(self, digest: str) -> str:
        if digest not in self.view.blobs:
            self.view.blobs[digest] = (await self.ctx.store.get_blob(digest)).decode("utf-8")
        return self.view.blobs[digest]

    async def ask(
        self, cause: Event, key: str, prompt: str, *, n: int, purpose: str, model: str, ordinal: int = 0
    ) -> Event:
        """Make sure the ``lm.requested`` for ``prompt`` (``n`` samples) exists under ``cause``."""
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

    async def replies(self, request: Event) -> tuple[Event | None, list[tuple[str, int]]]:
        """The answer (None while pending) and its completions as (text, completion tokens)."""
        ans = self.answer_of(request)
        if ans is None or ans.type == LMFailed.TYPE:
            return ans, []
        out = []
        for c in ans.decode(LMResponded).completions:
            out.append((await self.text(c["text"]), int(c.get("completion_tokens") or 0)))
        return ans, out

    async def program(
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
    ) -> Check:
        """Record the program a reply holds (a stub that raises when it holds none), ask for its
        check, and say what the check found so far."""
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
        check = Check(ev)
        done = self.answer_of(req)
        if done is not None:
            result = done.decode(UtilityEvaluated)
            check.passed = result.utility >= 1.0
            check.feedback = str(result.detail.get("feedback", ""))
        return check
