"""The lm error tree (who raises what).

::

    LMError
     ├── LMFatalError      a request that cannot succeed by retrying (bad key, unknown model,
     │                     malformed request); raised at once, the message says what to fix
     ├── LMUnavailable     transient failures outlasted the retry policy
     ├── CacheMiss         replay mode found no recorded answer (names request and cause)
     ├── CacheCorrupt      a recorded answer does not belong to the request it is keyed by
     └── BudgetExceeded    a call would go past a host-side budget (raised before the call)
"""

from __future__ import annotations

from typing import Any

__all__ = (
    "BudgetExceeded",
    "CacheCorrupt",
    "CacheMiss",
    "LMError",
    "LMFatalError",
    "LMUnavailable",
)


class LMError(Exception):
    """Base of every error raised by the lm package."""


class LMFatalError(LMError):
    """The endpoint refused the request in a way retrying cannot fix (HTTP 400/401/403/404/422)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LMUnavailable(LMError):
    """Raised by a backend when every attempt allowed by the retry policy failed transiently."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class CacheMiss(LMError):
    """Replay mode (strict): no recorded answer for this request and ordinal."""

    def __init__(self, *, key: str, ordinal: int, cause: str | None, request: dict[str, Any]) -> None:
        self.key = key
        self.ordinal = ordinal
        self.cause = cause
        self.request = request
        msgs = request.get("messages") or []
        last = str(msgs[-1].get("content", "")) if msgs else ""
        snippet = " ".join(last.split())[:80]
        super().__init__(
            f"replay cache miss: no recorded answer for request {key[:16]} "
            f"(model={request.get('model')!r}, n={request.get('n')}, ordinal {ordinal}, "
            f"last message {snippet!r}) caused by event {cause or '<none>'}; the log does not "
            f"hold this LM call, so the run being replayed diverged before it"
        )


class CacheCorrupt(LMError):
    """A cache row's stored request differs from the request whose key points at it."""


class BudgetExceeded(LMError):
    """A call would exceed a host-side LM budget. Raised before the call; nothing is truncated."""

    def __init__(self, limit: str, *, used: float, limit_value: float, requested: float) -> None:
        self.limit = limit
        self.used = used
        self.limit_value = limit_value
        self.requested = requested
        super().__init__(
            f"LM budget exceeded: {limit} limit is {_fmt(limit_value)}, {_fmt(used)} used, "
            f"this call needs {_fmt(requested)} more"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "used": self.used,
            "limit_value": self.limit_value,
            "requested": self.requested,
            "message": str(self),
        }


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)
