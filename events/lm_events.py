"""Payloads of the LM layer's run-level facts: spend caps and what the endpoint accepts.

Registered by importing ``events`` (``events/__init__.py`` imports this module).
"""

from __future__ import annotations

from typing import Any

from events.registry import Payload, payload

__all__ = ("LIVE_ONLY_TYPES", "BudgetExhausted", "BudgetRaised", "LMEndpointObserved")

#: Facts of a live session with an endpoint (what it accepted, where spend caps stopped and were
#: raised): an offline replay does not re-create them, so replay does not compare them.
LIVE_ONLY_TYPES = frozenset({"lm.endpoint", "budget.exhausted", "budget.raised"})


@payload("budget.exhausted")
class BudgetExhausted(Payload):
    """The run reached a spend cap: no new LM request was sent once the committed spend (spent +
    in-flight worst case) would cross ``cap``. Requests refused stay unanswered in the log, so
    ``stop resume RUN --max-cost-usd X`` (a ``budget.raised``) continues them.

    ``cap`` is "max_cost_usd" / "max_tokens_total" / "max_lm_calls"; ``limit`` its value;
    ``spent`` what the run had used when the last in-flight request settled (calls, prompt and
    completion tokens, cost in USD); ``raised`` how many ``budget.raised`` came before.
    """

    cap: str
    limit: float
    spent: dict[str, Any]
    message: str
    raised: int


@payload("budget.raised")
class BudgetRaised(Payload):
    """``stop resume --max-cost-usd`` (etc.): the caps from here on; ``previous`` the ones before."""

    caps: dict[str, Any]
    previous: dict[str, Any]
    index: int


@payload("lm.endpoint", volatile=("accepts",))
class LMEndpointObserved(Payload):
    """What the endpoint was found to accept (per model: token parameter, temperature, n
    honoured, seed), recorded when first learned and when it changes. A fact about the
    endpoint, not about the run's results: replay does not compare it."""

    endpoint: str
    accepts: dict[str, Any]
