"""Run-level spend caps: the one budget mechanism for LM spend (improver budgets count calls).

A ``SpendLedger`` is a run's committed spend: what its answered requests used (``spent``) plus,
for every request in flight, its worst case (prompt estimate + ``max_tokens`` x ``n``, priced).
``reserve`` refuses a request whose worst case would carry the committed spend past a cap; the
proposer then sends nothing, leaves the request unanswered and, once nothing is in flight,
records ``budget.exhausted``. So a run never spends past its caps, whatever the endpoint
replies (as long as the endpoint honours ``max_tokens``), and nothing is lost: the refused
requests are answered by ``stop resume RUN --max-cost-usd X`` with a raised cap.

Prices are USD per 1,000 tokens (prompt, completion). ``BUILTIN_PRICES`` is a list-price snapshot
of common models; ``lm.prices`` in the run config overrides it, and the price of the run's model
is written into the run's config at start (``price_snapshot``) so a resume bills the same.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lm._request import LMRequest
from lm._tokens import count_message_tokens

__all__ = (
    "BUILTIN_PRICES",
    "CAP_NAMES",
    "CapHit",
    "Spend",
    "SpendCaps",
    "SpendLedger",
    "price_for",
    "price_snapshot",
    "worst_case_tokens",
)

#: USD per 1k (prompt, completion) tokens; public list prices, 2025. Override with lm.prices.
BUILTIN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (0.0005, 0.0015),
    "gpt-4": (0.03, 0.06),
    "gpt-4-turbo": (0.01, 0.03),
    "gpt-4o": (0.0025, 0.01),
    "gpt-4o-mini": (0.00015, 0.0006),
    "gpt-4.1": (0.002, 0.008),
    "gpt-4.1-mini": (0.0004, 0.0016),
    "gpt-4.1-nano": (0.0001, 0.0004),
    "gpt-5": (0.00125, 0.01),
    "gpt-5-mini": (0.00025, 0.002),
    "gpt-5-nano": (0.00005, 0.0004),
    "o1": (0.015, 0.06),
    "o1-mini": (0.0011, 0.0044),
    "o3": (0.002, 0.008),
    "o3-mini": (0.0011, 0.0044),
    "o4-mini": (0.0011, 0.0044),
    "offline-mutation": (0.0, 0.0),
}

CAP_NAMES = ("max_cost_usd", "max_tokens_total", "max_lm_calls")

#: the prompt estimate is a word-piece count; real tokenizers may count up to ~1.5x more
_PROMPT_MARGIN = 1.5
#: worst case of a request that sets no max_tokens
_UNBOUNDED_COMPLETION = 4096


def price_for(model: str, prices: Mapping[str, Any] | None = None) -> tuple[float, float] | None:
    """(prompt, completion) USD per 1k tokens: ``prices`` first, then the built-in table; an
    exact name, else the longest known prefix (``gpt-4o-mini-2024-07-18`` is ``gpt-4o-mini``)."""
    for table in (prices or {}, BUILTIN_PRICES):
        if model in table:
            v = table[model]
            return float(v[0]), float(v[1])
        best = max((k for k in table if model.startswith(k + "-")), key=len, default=None)
        if best is not None:
            v = table[best]
            return float(v[0]), float(v[1])
    return None


def price_snapshot(model: str, prices: Mapping[str, Any] | None) -> dict[str, list[float]]:
    """The price table a run records: the overrides, plus the run model's price if known."""
    out = {k: [float(v[0]), float(v[1])] for k, v in (prices or {}).items()}
    if model not in out:
        p = price_for(model, prices)
        if p is not None:
            out[model] = [p[0], p[1]]
    return out


@dataclass(frozen=True)
class SpendCaps:
    """Whole-run caps; None means no cap."""

    max_cost_usd: float | None = None
    max_tokens_total: int | None = None
    max_lm_calls: int | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, n) is not None for n in CAP_NAMES)

    def to_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in CAP_NAMES}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SpendCaps:
        return cls(**{n: data.get(n) for n in CAP_NAMES})

    def raised(self, changes: Mapping[str, Any]) -> SpendCaps:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if k in CAP_NAMES and v is not None})


@dataclass(frozen=True)
class Spend:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def plus(self, other: Spend) -> Spend:
        return Spend(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_usd + other.cost_usd,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


@dataclass(frozen=True)
class CapHit:
    cap: str
    limit: float
    spent: Spend

    def message(self, run_id: str = "RUN") -> str:
        s = self.spent
        used = {
            "max_cost_usd": f"${s.cost_usd:.4f} spent",
            "max_tokens_total": f"{s.tokens} tokens used",
            "max_lm_calls": f"{s.calls} LM calls made",
        }[self.cap]
        flag = "--" + self.cap.replace("_", "-")
        return (
            f"spend cap {self.cap}={self.limit:g} reached: {used} ({s.calls} calls, {s.tokens} tokens, "
            f"${s.cost_usd:.4f}); continue with `stop resume {run_id} {flag} HIGHER`"
        )


def worst_case_tokens(req: LMRequest) -> tuple[int, int]:
    """(prompt, completion) tokens the request may use at most."""
    prompt = math.ceil(count_message_tokens(req.message_dicts) * _PROMPT_MARGIN)
    completion = (req.max_tokens if req.max_tokens is not None else _UNBOUNDED_COMPLETION) * req.n
    return prompt, completion


def cost_of(prompt: int, completion: int, price: tuple[float, float] | None) -> float:
    if price is None:
        return 0.0
    return prompt * price[0] / 1000 + completion * price[1] / 1000


@dataclass
class SpendLedger:
    """One run's committed spend, held by the proposer (rebuilt from the log on start)."""

    caps: SpendCaps
    prices: Mapping[str, Any] = field(default_factory=dict)
    spent: Spend = field(default_factory=Spend)
    in_flight: dict[str, Spend] = field(default_factory=dict)
    #: the cap that refused a request since the last raise (None: none refused)
    hit: CapHit | None = None
    raised: int = 0
    #: set after a fatal endpoint error: the run asks the model nothing more
    fatal: str | None = None
    #: running sums of the in-flight worst cases (calls, tokens, cost): O(1) per request
    _flight_calls: int = 0
    _flight_tokens: int = 0
    _flight_cost: float = 0.0

    def committed(self) -> Spend:
        return self.spent.plus(Spend(self._flight_calls, self._flight_tokens, 0, self._flight_cost))

    def _hold(self, key: str, worst: Spend) -> None:
        self.in_flight[key] = worst
        self._flight_calls += worst.calls
        self._flight_tokens += worst.tokens
        self._flight_cost += worst.cost_usd

    def _drop(self, key: str) -> None:
        worst = self.in_flight.pop(key, None)
        if worst is not None:
            self._flight_calls -= worst.calls
            self._flight_tokens -= worst.tokens
            self._flight_cost -= worst.cost_usd

    def reserve(self, key: str, req: LMRequest) -> CapHit | None:
        """Reserve the worst case of ``req`` under ``key``; the cap it would cross, if any."""
        prompt, completion = worst_case_tokens(req)
        worst = Spend(1, prompt, completion, cost_of(prompt, completion, price_for(req.model, self.prices)))
        c, s = self.caps, self.spent
        for cap, value, limit in (
            ("max_lm_calls", s.calls + self._flight_calls + 1, c.max_lm_calls),
            ("max_tokens_total", s.tokens + self._flight_tokens + worst.tokens, c.max_tokens_total),
            ("max_cost_usd", s.cost_usd + self._flight_cost + worst.cost_usd, c.max_cost_usd),
        ):
            if limit is not None and value > limit + 1e-12:
                hit = CapHit(cap, float(limit), self.spent)
                self.hit = self.hit or hit
                return hit
        self._hold(key, worst)
        return None

    def settle(self, key: str, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """The request under ``key`` was answered (or failed: zero tokens, still a call)."""
        self._drop(key)
        self.spent = self.spent.plus(
            Spend(
                1,
                prompt_tokens,
                completion_tokens,
                cost_of(prompt_tokens, completion_tokens, price_for(model, self.prices)),
            )
        )

    def release(self, key: str) -> None:
        """The request under ``key`` was never sent."""
        self._drop(key)

    def raise_caps(self, caps: SpendCaps) -> None:
        self.caps = caps
        self.hit = None
        self.raised += 1

    def exhausted_now(self) -> CapHit | None:
        """The cap to report once a request was refused and nothing is in flight any more."""
        if self.hit is None or self.in_flight:
            return None
        return CapHit(self.hit.cap, self.hit.limit, self.spent)
