"""Host-side LM budgets: a pure state folded from answers, checked before every call.

``BudgetState`` is immutable; ``check`` raises ``BudgetExceeded`` *before* a call that would go
past a limit, ``charged`` returns the state after an answer. Agents rebuild it as a fold over the
log (``BudgetState().charged(a1).charged(a2)...``), so budget decisions replay exactly.

Semantics of each limit (all optional):
- ``max_calls``: improver-level calls. ``prompt`` is one call; ``batch_prompt`` is one call
  however many distinct messages it groups (as in the STOP reference, whose meta-utility tells the
  model "4 LM calls of 6 samples"). Exact: call ``max_calls + 1`` raises.
- ``max_completions``: samples. Exact: a call whose n would pass the limit raises (n is never
  reduced to fit).
- ``max_tokens`` (prompt + completion) and ``max_cost_usd``: a reply's size is unknown before the
  call, so a call is allowed while the used amount is below the limit and the reply is charged
  in full; the first call after reaching the limit raises. A run can therefore end over the limit
  by at most one call, and the state says by how much; nothing is ever cut short.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lm._errors import BudgetExceeded
from lm._request import LMRequest

if TYPE_CHECKING:
    from lm._service import LMAnswer

__all__ = ("BudgetState", "LMBudget", "UnpricedModel")


class UnpricedModel(ValueError):
    """A cost cap is set but the price table has no entry for the model being called."""


@dataclass(frozen=True)
class LMBudget:
    max_calls: int | None = None
    max_completions: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    #: model -> (USD per 1k prompt tokens, USD per 1k completion tokens)
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def price(self, model: str) -> tuple[float, float] | None:
        return self.prices.get(model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_calls": self.max_calls,
            "max_completions": self.max_completions,
            "max_tokens": self.max_tokens,
            "max_cost_usd": self.max_cost_usd,
            "prices": {k: list(v) for k, v in sorted(self.prices.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LMBudget:
        prices = {k: (float(v[0]), float(v[1])) for k, v in (data.get("prices") or {}).items()}
        return cls(
            max_calls=data.get("max_calls"),
            max_completions=data.get("max_completions"),
            max_tokens=data.get("max_tokens"),
            max_cost_usd=data.get("max_cost_usd"),
            prices=prices,
        )


@dataclass(frozen=True)
class BudgetState:
    calls: int = 0
    requests: int = 0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def check(self, budget: LMBudget, *requests: LMRequest) -> None:
        """Raise ``BudgetExceeded`` if one call made of ``requests`` would pass a limit."""
        if budget.max_calls is not None and self.calls + 1 > budget.max_calls:
            raise BudgetExceeded("calls", used=self.calls, limit_value=budget.max_calls, requested=1)
        n = sum(r.n for r in requests)
        if budget.max_completions is not None and self.completions + n > budget.max_completions:
            raise BudgetExceeded("completions", used=self.completions, limit_value=budget.max_completions, requested=n)
        if budget.max_tokens is not None and self.tokens >= budget.max_tokens:
            raise BudgetExceeded("tokens", used=self.tokens, limit_value=budget.max_tokens, requested=1)
        if budget.max_cost_usd is not None:
            for r in requests:
                if budget.price(r.model) is None:
                    raise UnpricedModel(
                        f"a cost cap of ${budget.max_cost_usd:g} is set but the price table has no "
                        f"entry for model {r.model!r}; add prices[{r.model!r}] = "
                        f"(usd_per_1k_prompt, usd_per_1k_completion)"
                    )
            if self.cost_usd >= budget.max_cost_usd:
                raise BudgetExceeded("cost_usd", used=self.cost_usd, limit_value=budget.max_cost_usd, requested=0.0)

    def charged(self, *answers: LMAnswer, budget: LMBudget | None = None) -> BudgetState:
        """The state after one call that produced ``answers`` (one per request of the call)."""
        prompt = sum(a.prompt_tokens for a in answers)
        completion = sum(a.completion_tokens for a in answers)
        cost = 0.0
        if budget is not None:
            for a in answers:
                price = budget.price(a.request.model)
                if price is not None:
                    cost += a.prompt_tokens * price[0] / 1000 + a.completion_tokens * price[1] / 1000
        return dataclasses.replace(
            self,
            calls=self.calls + 1,
            requests=self.requests + len(answers),
            completions=self.completions + sum(len(a.completions) for a in answers),
            prompt_tokens=self.prompt_tokens + prompt,
            completion_tokens=self.completion_tokens + completion,
            cost_usd=self.cost_usd + cost,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BudgetState:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def fold(answers_per_call: Sequence[Sequence[LMAnswer]], budget: LMBudget | None = None) -> BudgetState:
    """Rebuild the state from the answers of each call, in order (what an agent's projection does)."""
    state = BudgetState()
    for call in answers_per_call:
        state = state.charged(*call, budget=budget)
    return state
