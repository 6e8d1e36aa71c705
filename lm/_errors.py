"""The lm error tree (who raises what).

::

    LMError
     ├── LMFatalError      a request that cannot succeed by retrying (bad key, unknown model,
     │                     malformed request, no quota); raised at once, the message says what
     │                     to fix; the run stops asking the model
     ├── LMUnavailable     transient failures outlasted the retry policy (that request failed)
     ├── MalformedReply    an HTTP 200 whose body is not a usable chat completion (retried)
     ├── CacheMiss         replay mode found no recorded answer (names request and cause)
     └── CacheCorrupt      a recorded answer does not belong to the request it is keyed by

Run-level spend caps are not an exception: the proposer stops issuing requests and records
``budget.exhausted`` (``lm.spend``).
"""

from __future__ import annotations

from typing import Any

__all__ = (
    "CacheCorrupt",
    "CacheMiss",
    "LMError",
    "LMFatalError",
    "LMUnavailable",
    "MalformedReply",
)


class LMError(Exception):
    """Base of every error raised by the lm package."""


class LMFatalError(LMError):
    """The endpoint refused the request in a way retrying cannot fix (HTTP 400/401/403/404/422).

    ``kind``: "auth" (401/403: the key), "model" (404), "request" (400/422), "quota" (429
    insufficient_quota). ``server_message`` is the endpoint's own error text.
    """

    def __init__(
        self, message: str, *, status: int | None = None, kind: str = "request", server_message: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.server_message = server_message


class LMUnavailable(LMError):
    """Raised by a backend when every attempt allowed by the retry policy failed transiently.

    ``kind`` classifies the last failure: "timeout", "connection", "rate_limit", "server",
    "malformed"."""

    def __init__(self, message: str, *, attempts: int, kind: str = "unavailable", status: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.kind = kind
        self.status = status


class MalformedReply(LMError):
    """An HTTP 200 that is not a usable chat completion: non-JSON (an HTML error page),
    ``choices`` empty or of the wrong type, ``content`` null. Transient: retried."""


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
