"""OpenAI-compatible chat-completions backend (OpenAI, vLLM, Ollama, llama.cpp servers).

- the openai SDK's async client with its own retries off (``max_retries=0``); tenacity with
  ``should_retry`` and ``PolicyWait`` is the one retry policy;
- one ``anyio.CapacityLimiter`` per endpoint bounds in-flight HTTP calls (held per attempt, not
  during backoff);
- ``n`` > 1 is sent as is; if the endpoint returns fewer choices than asked, the rest are fetched
  by fan-out (n=1 calls) and the endpoint is remembered as ignoring ``n``;
- the API key lives only inside the SDK client: never in requests, records, events, logs or repr.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import anyio
import openai
import structlog
from tenacity import AsyncRetrying, RetryError, retry_if_exception, stop_after_attempt

from lm._errors import LMFatalError, LMUnavailable
from lm._request import Completion, LMRequest
from lm._retry import PolicyWait, RetryPolicy, should_retry

__all__ = ("OpenAICompatibleBackend", "public_url")

log = structlog.get_logger("lm.openai")

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def public_url(url: str) -> str:
    """The URL with any ``user:password@`` removed (safe to log and record)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class OpenAICompatibleBackend:
    """An OpenAI-compatible endpoint. ``client_factory`` exists for tests and custom transports."""

    offline = False

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        client_factory: Callable[[], openai.AsyncOpenAI] | None = None,
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.default_model = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.name = f"openai-compatible:{public_url(self.base_url)}"
        self._api_key = api_key or "not-needed"  # local servers accept any key
        self._key_given = api_key is not None
        self._client_factory = client_factory
        self._client: openai.AsyncOpenAI | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        #: None until observed; False once the endpoint returned fewer choices than asked
        self.honours_n: bool | None = None
        self.http_calls = 0

    def __repr__(self) -> str:
        key = "***" if self._key_given else None
        return (
            f"OpenAICompatibleBackend(base_url={public_url(self.base_url)!r}, "
            f"model={self.default_model!r}, api_key={key!r}, concurrency={self.concurrency})"
        )

    def describe(self) -> dict[str, Any]:
        url = public_url(self.base_url)
        return {
            "kind": "openai-compatible",
            "label": f"language model {self.default_model or '(model from request)'} at {url}",
            "base_url": url,
            "model": self.default_model,
            "api_key_set": self._key_given,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout,
            "max_attempts": self.retry.max_attempts,
        }

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                self._client = openai.AsyncOpenAI(
                    base_url=self.base_url, api_key=self._api_key, max_retries=0, timeout=self.timeout
                )
        return self._client

    def _get_limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        return self._limiter

    async def aclose(self) -> None:
        """Close the HTTP client (its pooled connections). The backend can be used again after."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> OpenAICompatibleBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def complete(self, req: LMRequest, *, ordinal: int = 0) -> list[Completion]:
        if self.honours_n is False and req.n > 1:
            return await self._fan_out(req, req.n)
        first = await self._call(req, req.n)
        if len(first) >= req.n:
            if req.n > 1:
                self.honours_n = True
            return first[: req.n]
        if req.n > 1 and self.honours_n is not False:
            log.info("lm.endpoint_ignores_n", endpoint=public_url(self.base_url), asked=req.n, got=len(first))
        self.honours_n = False
        return first + await self._fan_out(req, req.n - len(first))

    async def _fan_out(self, req: LMRequest, count: int) -> list[Completion]:
        results: list[list[Completion]] = [[] for _ in range(count)]

        async def one(i: int) -> None:
            got = await self._call(req, 1)
            if not got:
                raise LMUnavailable(f"{public_url(self.base_url)} returned no choices", attempts=1)
            results[i] = got[:1]

        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(one, i)
        return [c for part in results for c in part]

    async def _call(self, req: LMRequest, n: int) -> list[Completion]:
        """One logical HTTP call with retries; fatal errors become ``LMFatalError`` at once."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(should_retry),
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=PolicyWait(self.retry),
            sleep=anyio.sleep,
            before_sleep=self._before_sleep,
            reraise=False,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(req, n)
        except RetryError as e:
            last = e.last_attempt.exception()
            raise LMUnavailable(
                f"{public_url(self.base_url)} kept failing after {self.retry.max_attempts} attempts; "
                f"last error: {self._scrub(_describe_exc(last))}",
                attempts=self.retry.max_attempts,
            ) from last
        except openai.APIStatusError as e:
            raise self._fatal(e, req) from e
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, req: LMRequest, n: int) -> list[Completion]:
        kwargs: dict[str, Any] = {
            "model": req.model,
            "messages": req.message_dicts,
            "temperature": req.temperature,
            "n": n,
        }
        if req.max_tokens is not None:
            kwargs["max_tokens"] = req.max_tokens
        if req.top_p is not None:
            kwargs["top_p"] = req.top_p
        if req.stop is not None:
            kwargs["stop"] = list(req.stop)
        if req.seed is not None:
            kwargs["seed"] = req.seed
        async with self._get_limiter():
            self.http_calls += 1
            resp = await self._get_client().chat.completions.create(**kwargs)
        return _completions(resp)

    def _before_sleep(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "lm.retry",
            endpoint=public_url(self.base_url),
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            error=self._scrub(_describe_exc(exc)),
        )

    def _scrub(self, text: str) -> str:
        if self._key_given and self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    def _fatal(self, e: openai.APIStatusError, req: LMRequest) -> LMFatalError:
        url = public_url(self.base_url)
        status = e.status_code
        detail = self._scrub(_server_message(e))
        if status == 401:
            hint = f"the endpoint {url} rejected the API key (HTTP 401); set OPENAI_API_KEY to a valid key"
        elif status == 403:
            hint = f"the key has no access to model {req.model!r} at {url} (HTTP 403); use a key or model it may use"
        elif status == 404:
            hint = (
                f"model {req.model!r} was not found at {url} (HTTP 404); check the model name in the "
                f"run config (lm.model) or OPENAI_MODEL, and that OPENAI_BASE_URL ends in /v1"
            )
        elif status == 429:
            hint = f"the account behind the key has no quota left at {url} (HTTP 429 insufficient_quota)"
        else:
            hint = f"the endpoint {url} refused the request (HTTP {status}); fix the request parameters"
        return LMFatalError(f"{hint}. Server said: {detail}", status=status)


def _server_message(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return str(e)[:300]


def _describe_exc(exc: BaseException | None) -> str:
    if exc is None:
        return "<none>"
    status = getattr(exc, "status_code", None)
    prefix = f"HTTP {status} " if status is not None else ""
    return f"{prefix}{type(exc).__name__}: {str(exc)[:200]}"


def _completions(resp: Any) -> list[Completion]:
    choices = sorted(resp.choices or [], key=lambda c: getattr(c, "index", 0) or 0)
    usage = getattr(resp, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    k = len(choices)
    out = []
    for i, ch in enumerate(choices):
        share = completion // k + (1 if i < completion % k else 0) if k else 0
        text = ch.message.content if ch.message is not None else None
        out.append(
            Completion(
                text=text or "",
                prompt_tokens=prompt if i == 0 else 0,
                completion_tokens=share,
                finish_reason=ch.finish_reason,
            )
        )
    return out
