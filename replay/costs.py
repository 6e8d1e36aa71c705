"""LM usage of a run: every ``lm.requested`` with its answer, tokens and (optional) price.

Cost is what this run paid: live answers priced by the run config's table
``lm.prices = {model: [usd_per_1k_prompt, usd_per_1k_completion]}``. Cached and offline answers
and unpriced models cost 0 (their tokens are still counted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from events.model import Event
from events.stop_events import LMFailed, LMRequested, LMResponded
from replay.tree import CausalTree

__all__ = ("SOURCES", "LMCall", "LMUsage", "Prices", "lm_calls", "prices_from_config")

Prices = Mapping[str, tuple[float, float]]
SOURCES = ("live", "cache", "offline")


def prices_from_config(config: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """The price table from a run config (``lm.prices``, ``lm.budget.prices`` or ``prices``)."""
    config = config or {}
    lm = config.get("lm") if isinstance(config.get("lm"), Mapping) else {}
    assert isinstance(lm, Mapping)
    budget = lm.get("budget") if isinstance(lm.get("budget"), Mapping) else {}
    assert isinstance(budget, Mapping)
    table = lm.get("prices") or budget.get("prices") or config.get("prices") or {}
    out: dict[str, tuple[float, float]] = {}
    if isinstance(table, Mapping):
        for model, pair in table.items():
            try:
                out[str(model)] = (float(pair[0]), float(pair[1]))
            except (TypeError, ValueError, IndexError, KeyError):
                continue
    return out


@dataclass
class LMUsage:
    """Counts over a set of LM calls (one ``lm.requested`` is one call)."""

    calls: int = 0
    live: int = 0
    cache: int = 0
    offline: int = 0
    failed: int = 0
    unanswered: int = 0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, call: LMCall) -> None:
        self.calls += 1
        if call.outcome in ("live", "cache", "offline", "failed", "unanswered"):
            setattr(self, call.outcome, getattr(self, call.outcome) + 1)
        self.completions += call.completions
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        self.cost_usd += call.cost_usd

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "live": self.live,
            "cache": self.cache,
            "offline": self.offline,
            "failed": self.failed,
            "unanswered": self.unanswered,
            "completions": self.completions,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


@dataclass
class LMCall:
    request: Event
    answer: Event | None
    model: str
    outcome: str  # live | cache | offline | failed | unanswered | <other recorded source>
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    blobs: list[str] = field(default_factory=list)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def lm_calls(tree: CausalTree, prices: Prices) -> list[LMCall]:
    out: list[LMCall] = []
    for req in tree.of_type(LMRequested.TYPE):
        model = str(req.decode(LMRequested).request.get("model", "?"))
        answer = tree.child(req, LMResponded.TYPE) or tree.child(req, LMFailed.TYPE)
        if answer is None:
            out.append(LMCall(req, None, model, "unanswered"))
            continue
        if answer.is_a(LMFailed):
            out.append(LMCall(req, answer, model, "failed"))
            continue
        answered = answer.decode(LMResponded)
        source = answered.source
        call = LMCall(req, answer, model, source)
        for c in answered.completions:
            call.completions += 1
            call.prompt_tokens += _int(c.get("prompt_tokens"))
            call.completion_tokens += _int(c.get("completion_tokens"))
        price = prices.get(model)
        if source == "live" and price is not None:
            call.cost_usd = (call.prompt_tokens * price[0] + call.completion_tokens * price[1]) / 1000
        out.append(call)
    return out
