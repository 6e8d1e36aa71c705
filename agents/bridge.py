"""The host side of an improver session: its LM and utility calls become request events.

Budgets live here, on the host: the guest's proxies show a count but cannot change this one.
A refused call is recorded (``budget.exceeded``) and raised inside the improver as an error.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agents.context import AgentContext, AnswerWaiter
from agents.fork import ForkPrefix
from agents.identity import causal_path, namespace_of, seed_from
from agents.runinfo import RunInfo
from events import Event, content_key, make_event, sha256_hex
from events.routing import LM_ANSWERS
from events.stop_events import (
    BudgetExceeded,
    LMFailed,
    LMRequested,
    LMResponded,
    SessionRequested,
    UtilityEvaluated,
    UtilityRequested,
)
from lm import LMRequest, cache_key
from sandbox import BridgeError, Job, LanguageModelProxy, UtilityProxy
from tasks import get_task
from tasks.meta import MetaTask

__all__ = ("SessionBridge", "utility_description", "utility_text")

_LM_KINDS = ("lm.prompt", "lm.batch_prompt")
_ANSWERS = LM_ANSWERS


def utility_description(task: str, info: RunInfo) -> str:
    if task == "meta":
        return MetaTask(info.config.meta_utility).description
    return get_task(task).description


def utility_text(task: str, info: RunInfo) -> str:
    """The visible utility program the guest's ``utility.str`` returns."""
    if task == "meta":
        return MetaTask(info.config.meta_utility).utility_text
    return get_task(task).utility_text


def _groups(messages: list[str]) -> list[tuple[str, int, list[int]]]:
    """Identical messages grouped (first-seen order): (message, count, input positions)."""
    order: dict[str, list[int]] = {}
    for i, m in enumerate(messages):
        order.setdefault(m, []).append(i)
    return [(m, len(pos), pos) for m, pos in order.items()]


class SessionBridge:
    def __init__(
        self,
        ctx: AgentContext,
        waiter: AnswerWaiter,
        work: Event,
        info: RunInfo,
        namespace: str,
        session_path: list[str],
        fork: ForkPrefix | None,
    ) -> None:
        self.ctx = ctx
        self.waiter = waiter
        self.work = work
        self.info = info
        self.namespace = namespace
        self.p = work.decode(SessionRequested)
        self.lm_calls = 0
        self.utility_calls = 0
        self._request_counts: Counter[str] = Counter()
        self._session_path = session_path
        self._fork = fork

    @classmethod
    async def create(cls, ctx: AgentContext, waiter: AnswerWaiter, work: Event) -> SessionBridge:
        info = await ctx.runs.info(work.run_id)
        path = await causal_path(ctx.store, work)
        return cls(
            ctx,
            waiter,
            work,
            info,
            namespace_of(path, info.seed),  # the same walk, not a second one
            path,
            await ctx.runs.fork_prefix(info.options),
        )

    def _model_for(self, key: str, req: LMRequest) -> LMRequest:
        """In a fork, a request the source asked before the cut keeps the source's model."""
        if self._fork is None:
            return req
        recorded = self._fork.recorded_request("/".join([*self._session_path, f"{LMRequested.TYPE}:{key}"]))
        if recorded is None or recorded.get("model") == req.model:
            return req
        alt = LMRequest.from_canonical({**req.canonical(), "model": recorded["model"]})
        return alt if alt.canonical() == recorded else req

    def job(self, improver: str, initial_solution: str) -> Job:
        p = self.p
        return Job(
            program=improver,
            function="improve_algorithm",
            args=(
                initial_solution,
                UtilityProxy(
                    description=utility_description(p.utility_task, self.info),
                    budget=p.utility_calls,
                    text=utility_text(p.utility_task, self.info),
                ),
                LanguageModelProxy(budget=p.lm_calls, max_responses_per_call=p.responses_per_call),
            ),
            wall_timeout_s=float(p.timeout_s),
            seed=p.seed,
        )

    async def on_request(self, kind: str, body: dict[str, Any], occurrence: int) -> Any:
        key = content_key([kind, body], occurrence)
        if kind == "utility":
            return await self._utility(body, key)
        if kind in _LM_KINDS:
            return await self._lm(kind, body, key)
        raise BridgeError(f"unknown request kind {kind!r}")

    async def _refuse(self, key: str, resource: str, used: int, limit: int, detail: str) -> BridgeError:
        ev = make_event(
            self.work.run_id,
            BudgetExceeded(resource=resource, used=used, limit=limit, detail=detail),
            cause=self.work,
            key=f"{key}/refused",
        )
        await self.ctx.store.append([ev])
        return BridgeError(f"Error: You have exceeded your call budget: {detail}")

    async def _utility(self, body: dict[str, Any], key: str) -> float:
        limit = self.p.utility_calls
        if self.utility_calls >= limit:
            raise await self._refuse(
                key,
                "utility_calls",
                self.utility_calls,
                limit,
                f"utility.budget is {limit} calls, all used",
            )
        solution = body.get("solution")
        if not isinstance(solution, str):
            raise BridgeError("utility() takes the solution's program text (str)")
        if body.get("mode", "val") not in ("val", "train"):
            raise BridgeError("utility(mode=...): only 'val' (or 'train') is available to improvers")
        if not solution:
            return 0.0  # no program scores 0 without a run or a use (the reference's rule)
        self.utility_calls += 1
        raw = solution.encode("utf-8")
        req = make_event(
            self.work.run_id,
            UtilityRequested(
                task=self.p.utility_task,
                split=self.info.config.meta_utility.selection_split,
                solution=sha256_hex(raw),
                seed=seed_from(self.work.id, key),
            ),
            cause=self.work,
            key=key,
        )
        await self.ctx.store.append([req], blobs=[raw])
        answer = await self.waiter.wait(req.id, {UtilityEvaluated.TYPE})
        return answer.decode(UtilityEvaluated).utility

    async def _lm(self, kind: str, body: dict[str, Any], key: str) -> list[str]:
        """One ``language_model`` call: budgets checked, one ``lm.requested`` per distinct
        message (identical ones share a request with ``n``), the answers in input order."""
        limit = self.p.lm_calls
        per_call = self.p.responses_per_call
        if self.lm_calls >= limit:
            raise await self._refuse(
                key,
                "lm_calls",
                self.lm_calls,
                limit,
                f"language_model.budget is {limit} calls, all used",
            )
        messages = _messages(kind, body)
        if not messages:
            return []
        if len(messages) > per_call:
            raise await self._refuse(
                key,
                "responses_per_call",
                len(messages),
                per_call,
                f"{len(messages)} responses asked in one call; language_model.max_responses_per_call is {per_call}",
            )
        self.lm_calls += 1
        expertise = str(body.get("expertise", ""))
        temperature = float(body.get("temperature", 0.7))
        requests = [
            (self._lm_request(kind, f"{key}/{gi}", expertise, message, temperature, count), positions)
            for gi, (message, count, positions) in enumerate(_groups(messages))
        ]
        await self.ctx.store.append([ev for ev, _ in requests])
        out: list[str] = [""] * len(messages)
        for ev, positions in requests:
            texts = await self._answer_texts(ev)
            for pos, text in zip(positions, texts, strict=True):
                out[pos] = text
        return out

    def _lm_request(self, kind: str, key: str, expertise: str, message: str, temperature: float, n: int) -> Event:
        """The ``lm.requested`` for ``n`` samples of one message (its ordinal among identical
        requests of this session fixes which recorded samples it gets)."""
        req = LMRequest(
            model=self.info.model,
            messages=({"role": "system", "content": expertise}, {"role": "user", "content": message}),
            temperature=temperature,
            max_tokens=self.info.config.max_tokens,
            n=n,
            # The sampling seed derives from the causal position, so different sessions
            # asking the same prompt get different samples, reproducibly (offline too).
            seed=seed_from(self.namespace),
        )
        req = self._model_for(key, req)
        digest = req.request_hash()
        ordinal = self._request_counts[digest]
        self._request_counts[digest] += 1
        return make_event(
            self.work.run_id,
            LMRequested(
                request=req.canonical(),
                namespace=self.namespace,
                ordinal=ordinal,
                cache_key=cache_key(req, ordinal, self.namespace),
                purpose=kind,
            ),
            cause=self.work,
            key=key,
        )

    async def _answer_texts(self, request: Event) -> list[str]:
        """Wait for the answer to ``request``: its completion texts, or the failure as an error."""
        answer = await self.waiter.wait(request.id, _ANSWERS)
        if answer.is_a(LMFailed):
            raise BridgeError(f"language model call failed: {answer.decode(LMFailed).error}")
        completions = answer.decode(LMResponded).completions
        return [(await self.ctx.store.get_blob(c["text"])).decode("utf-8") for c in completions]


def _messages(kind: str, body: dict[str, Any]) -> list[str]:
    """The user messages of an ``lm.prompt`` (one message, ``n_responses`` times) or an
    ``lm.batch_prompt`` (a list)."""
    if kind == "lm.prompt":
        n = int(body.get("n_responses", 1))
        return [str(body.get("message", ""))] * max(n, 0)
    return [str(m) for m in body.get("messages", [])]
