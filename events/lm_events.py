"""Event payloads of the lm layer (registered on import of ``lm``)."""

from __future__ import annotations

from typing import Any

from events.registry import Payload, payload

__all__ = ("LMBudgetExceeded",)


@payload("lm.budget_exceeded")
class LMBudgetExceeded(Payload):
    """An improver's LM call was refused because it would pass a host-side budget.

    ``limit`` is one of calls / completions / tokens / cost_usd; ``state`` is the BudgetState
    (as a dict) at the refusal; ``request_hashes`` identify the refused request(s).
    """

    limit: str
    used: float
    limit_value: float
    requested: float
    message: str
    state: dict[str, Any]
    request_hashes: list[str]
