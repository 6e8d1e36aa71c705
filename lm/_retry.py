"""The one retry policy: which errors are worth retrying, and how long to wait.

``should_retry`` is the single classification of endpoint errors (as inspect_ai's
``ModelAPI.should_retry``); the openai SDK's own retries are switched off (``max_retries=0``)
so that tenacity, configured here, is the only policy.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import openai
from tenacity import RetryCallState

from lm._errors import MalformedReply

__all__ = ("PolicyWait", "RetryPolicy", "retry_after_seconds", "should_retry")

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    #: a Retry-After longer than this is capped (the attempt budget still bounds total time)
    max_retry_after: float = 60.0


def should_retry(exc: BaseException) -> bool:
    """True for transient failures (429 rate limits, 5xx, timeouts, dropped connections,
    garbled or malformed bodies); False for requests that cannot succeed (bad key, unknown model, bad
    request, exhausted quota) and for anything that is not an endpoint error."""
    if isinstance(exc, openai.RateLimitError):
        return _error_code(exc) != "insufficient_quota"
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUS or exc.status_code >= 500
    if isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError)):
        return True  # includes APITimeoutError
    if isinstance(exc, (MalformedReply, json.JSONDecodeError, TimeoutError)):
        return True
    return False


def _error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            code = err.get("code") or err.get("type")
            return str(code) if code is not None else None
    return None


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's requested wait (``retry-after-ms`` or ``Retry-After``: seconds or a date)."""
    response: Any = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


class PolicyWait:
    """Exponential backoff with full jitter, but never shorter than the server's Retry-After.

    Jitter uses its own ``random.Random`` so the timing of retries never touches any RNG that
    decides results.
    """

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()

    def __call__(self, state: RetryCallState) -> float:
        p = self.policy
        ceiling = min(p.max_backoff, p.initial_backoff * (2 ** max(0, state.attempt_number - 1)))
        wait = self.rng.uniform(0.0, ceiling)
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is not None:
            after = retry_after_seconds(exc)
            if after is not None:
                wait = max(wait, min(after, p.max_retry_after))
        return wait
