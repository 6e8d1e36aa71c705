"""The STOP-style interface improvers use: ``prompt`` and ``batch_prompt`` under a budget."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import anyio
import structlog

from events import make_event
from events.lm_events import LMBudgetExceeded
from lm._budget import BudgetState, LMBudget
from lm._errors import BudgetExceeded, LMError
from lm._request import LMRequest
from lm._service import LMAnswer, LMService

__all__ = ("OccurrenceOrdinals", "StopLanguageModel")

log = structlog.get_logger("lm.stop")


class OccurrenceOrdinals:
    """Ordinal = occurrence index of a request among identical requests of this caller.

    Assigned synchronously when a call is issued (before any await), so the ordinals depend
    only on the order in which the improver issues calls, not on how replies interleave. Agents
    that derive ordinals from the log pass their own function instead.
    """

    def __init__(self) -> None:
        self._seen: Counter[str] = Counter()

    def __call__(self, req: LMRequest) -> int:
        h = req.request_hash()
        k = self._seen[h]
        self._seen[h] += 1
        return k


class StopLanguageModel:
    """``language_model`` as the STOP reference's improvers see it, backed by ``LMService``.

    Each ``prompt`` / ``batch_prompt`` is one call against ``budget`` (checked before anything is
    sent; a refusal raises ``BudgetExceeded`` and, when ``run_id`` is given, appends an
    ``lm.budget_exceeded`` event caused by ``cause``). Answers are recorded in the cache through
    ``service.complete``.
    """

    def __init__(
        self,
        service: LMService,
        budget: LMBudget | None = None,
        *,
        model: str | None = None,
        max_tokens: int | None = 1024,
        max_responses_per_call: int = 6,
        state: BudgetState | None = None,
        ordinals: Callable[[LMRequest], int] | None = None,
        run_id: str | None = None,
        cause: str | None = None,
        on_answer: Callable[[LMAnswer], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
        self.lm_budget = budget or LMBudget()
        self.model = model or service.default_model
        if self.model is None:
            raise LMError("StopLanguageModel needs a model name (replay mode has no backend to ask)")
        self.max_tokens = max_tokens
        self.max_responses_per_call = max_responses_per_call
        self.state = state or BudgetState()
        self._ordinals = ordinals or OccurrenceOrdinals()
        self.run_id = run_id
        self.cause = cause
        self._on_answer = on_answer
        self._refusals = 0

    # The reference exposes the call budget as ``language_model.budget`` and the used count as
    # ``times_used``; improvers read them to size their loops.
    @property
    def budget(self) -> int | None:
        return self.lm_budget.max_calls

    @property
    def times_used(self) -> int:
        return self.state.calls

    def _request(self, expertise: str, message: str, n: int, temperature: float) -> LMRequest:
        return LMRequest(
            model=self.model or "",
            messages=[{"role": "system", "content": expertise}, {"role": "user", "content": message}],
            temperature=temperature,
            max_tokens=self.max_tokens,
            n=n,
        )

    async def prompt(self, expertise: str, message: str, n_responses: int = 1, temperature: float = 0.7) -> list[str]:
        req = self._request(expertise, message, n_responses, temperature)
        answers = await self._call([req])
        return answers[0].texts

    async def batch_prompt(self, expertise: str, messages: Sequence[str], temperature: float = 0.7) -> list[str]:
        """Identical messages become one request with n = count; results in input order."""
        if isinstance(messages, str):
            messages = [messages]
        groups = Counter(messages)  # insertion-ordered by first appearance
        reqs = [self._request(expertise, m, count, temperature) for m, count in groups.items()]
        answers = await self._call(reqs)
        pools = {m: list(a.texts) for m, a in zip(groups, answers, strict=False)}
        return [pools[m].pop(0) for m in messages]

    async def _call(self, reqs: list[LMRequest]) -> list[LMAnswer]:
        if not reqs:
            return []
        try:
            self.state.check(self.lm_budget, *reqs)
        except BudgetExceeded as exc:
            await self._record_refusal(exc, reqs)
            raise
        ordinals = [self._ordinals(r) for r in reqs]  # before any await: deterministic
        answers: list[LMAnswer | None] = [None] * len(reqs)

        async def one(i: int) -> None:
            answers[i] = await self.service.complete(reqs[i], ordinals[i], cause=self.cause)

        async with anyio.create_task_group() as tg:
            for i in range(len(reqs)):
                tg.start_soon(one, i)
        done = [a for a in answers if a is not None]
        self.state = self.state.charged(*done, budget=self.lm_budget)
        if self._on_answer is not None:
            for a in done:
                await self._on_answer(a)
        return done

    async def _record_refusal(self, exc: BudgetExceeded, reqs: list[LMRequest]) -> None:
        log.info("lm.budget_exceeded", limit=exc.limit, used=exc.used, limit_value=exc.limit_value)
        if self.run_id is None:
            return
        data = LMBudgetExceeded(
            limit=exc.limit,
            used=exc.used,
            limit_value=exc.limit_value,
            requested=exc.requested,
            message=str(exc),
            state=self.state.to_dict(),
            request_hashes=[r.request_hash() for r in reqs],
        )
        key = f"refusal#{self._refusals}"
        self._refusals += 1
        await self.service.store.append([make_event(self.run_id, data, cause=self.cause, key=key)])
