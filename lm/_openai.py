"""OpenAI-compatible chat-completions backend (OpenAI, vLLM, Ollama, llama.cpp servers).

- one openai SDK async client (one connection pool) per backend, its own retries off
  (``max_retries=0``); tenacity with ``should_retry`` and ``PolicyWait`` is the one retry policy;
- the reply body is parsed and validated here (``parse_reply``), not by the SDK's models: every
  malformed shape of an HTTP 200 (non-JSON, ``choices`` empty or of the wrong type, ``content``
  null) becomes a ``MalformedReply``, which is retried like a 5xx; usage that is missing,
  negative or absurd is replaced by an estimate and flagged (``Completion.usage_note``);
- fatal refusals (401/403 key, 404 model, 400 request, no quota) raise ``LMFatalError`` at once,
  with the endpoint's own message and what to change; a 400 that names a parameter the model
  refuses (``max_tokens`` on reasoning models, ``temperature``, ``n``, ``seed``) is learned
  (``EndpointParams``) and the request is sent again without it;
- one ``anyio.CapacityLimiter`` per endpoint bounds in-flight HTTP calls (held per attempt, not
  during backoff); a call still unanswered after ``stall_warn_s`` logs ``lm.stalled``;
- ``n`` > 1 is sent as is; if the endpoint returns fewer choices than asked, the rest are fetched
  by fan-out (n=1 calls) and the endpoint is remembered as ignoring ``n``;
- the API key lives only inside the SDK client: never in requests, records, events, logs or repr.

Per call the client pays only what the SDK and the wire need (``bench lm``): the SDK's aiohttp
transport (``openai[aiohttp]``, its offered alternative to httpx's pure-Python connection pool,
about half the client CPU per call), the body serialised once with ``json.dumps``, the stall
warning as an event-loop timer (not a task per call), and tenacity entered only after a first
attempt failed (the retry policy and its attempt numbering are unchanged).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import openai
import structlog
from tenacity import AsyncRetrying, RetryError, retry_if_exception, stop_after_attempt

from lm._errors import LMError, LMFatalError, LMUnavailable, MalformedReply
from lm._request import Completion, LMRequest
from lm._retry import PolicyWait, RetryPolicy, should_retry
from lm._tokens import count_tokens

__all__ = ("DEFAULT_TIMEOUT_S", "EndpointParams", "OpenAICompatibleBackend", "parse_reply", "public_url")

log = structlog.get_logger("lm.openai")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT_S = 300.0
#: usage above this many tokens in one reply is not believed (clamped to an estimate, flagged)
ABSURD_TOKENS = 10_000_000
#: model names that take ``max_completion_tokens`` and refuse ``temperature`` (o1, o3, o4-mini, gpt-5…)
REASONING_MODEL = re.compile(r"^(?:[\w.-]+/)?(?:o\d|gpt-5)", re.IGNORECASE)


def public_url(url: str) -> str:
    """The URL with any ``user:password@`` removed (safe to log and record)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass
class EndpointParams:
    """What the endpoint was found to accept (transport only: never part of a cache key).

    Starts from the model's name (reasoning models: ``max_completion_tokens``, no temperature)
    and is corrected by the endpoint's own 400 refusals and by how many choices it returns.
    """

    token_param: str = "max_tokens"
    temperature: bool = True
    n: bool = True
    seed: bool = True
    reasoning_effort: str | None = None
    #: None until a request with n > 1 was answered
    n_honoured: bool | None = None
    learned: tuple[str, ...] = ()

    @classmethod
    def for_model(cls, model: str | None, reasoning_effort: str | None = None) -> EndpointParams:
        if model and REASONING_MODEL.match(model):
            return cls(token_param="max_completion_tokens", temperature=False, reasoning_effort=reasoning_effort)
        return cls(reasoning_effort=reasoning_effort)

    def adapt(self, message: str) -> str | None:
        """Learn from a 400's text; the name of what changed, or None if nothing applies."""
        m = message.lower()
        if "max_completion_tokens" in m and self.token_param == "max_tokens":
            self.token_param = "max_completion_tokens"
            return self._learn("max_completion_tokens")
        if "temperature" in m and self.temperature:
            self.temperature = False
            return self._learn("no temperature")
        if "reasoning_effort" in m and self.reasoning_effort is not None:
            self.reasoning_effort = None
            return self._learn("no reasoning_effort")
        if "seed" in m and self.seed:
            self.seed = False
            return self._learn("no seed")
        if re.search(r"['\"`]n['\"`]|\bn\b must|parameter n\b", m) and self.n:
            self.n = False
            self.n_honoured = False
            return self._learn("no n")
        return None

    def _learn(self, what: str) -> str:
        self.learned = (*self.learned, what)
        return what

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_param": self.token_param,
            "temperature_accepted": self.temperature,
            "n_accepted": self.n,
            "n_honoured": self.n_honoured,
            "seed_accepted": self.seed,
            "reasoning_effort": self.reasoning_effort,
            "learned": list(self.learned),
        }


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
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        reasoning_effort: str | None = None,
        stall_warn_s: float | None = None,
        client_factory: Callable[[], openai.AsyncOpenAI] | None = None,
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.default_model = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.stall_warn_s = stall_warn_s if stall_warn_s is not None else min(30.0, timeout / 2)
        self.name = f"openai-compatible:{public_url(self.base_url)}"
        self._api_key = api_key or "not-needed"  # local servers accept any key
        self._key_given = api_key is not None
        self._client_factory = client_factory
        self._client: openai.AsyncOpenAI | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._reasoning_effort = reasoning_effort
        self._params: dict[str, EndpointParams] = {}
        self.http_calls = 0

    def __repr__(self) -> str:
        key = "***" if self._key_given else None
        return (
            f"OpenAICompatibleBackend(base_url={public_url(self.base_url)!r}, "
            f"model={self.default_model!r}, api_key={key!r}, concurrency={self.concurrency})"
        )

    @property
    def honours_n(self) -> bool | None:
        """Whether the endpoint returned ``n`` choices for the default model (None: not seen yet)."""
        return self.params(self.default_model or "").n_honoured

    def params(self, model: str) -> EndpointParams:
        """What this endpoint accepts for ``model`` (learned per model)."""
        p = self._params.get(model)
        if p is None:
            p = self._params[model] = EndpointParams.for_model(model, self._reasoning_effort)
        return p

    def accepts(self) -> dict[str, Any]:
        """What the endpoint was found to accept, per model (for the run's ``lm.endpoint`` event)."""
        return {m: p.to_dict() for m, p in sorted(self._params.items())}

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
            "reasoning_effort": self._reasoning_effort,
        }

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                self._client = openai.AsyncOpenAI(
                    base_url=self.base_url,
                    api_key=self._api_key,
                    max_retries=0,
                    timeout=self.timeout,
                    http_client=_http_client(self.timeout),
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
        params = self.params(req.model)
        if req.n > 1 and (params.n_honoured is False or not params.n):
            return await self._fan_out(req, req.n)
        first = await self._call(req, req.n)
        if len(first) >= req.n:
            if req.n > 1:
                params.n_honoured = True
            return first[: req.n]
        if req.n > 1 and params.n_honoured is not False:
            log.info("lm.endpoint_ignores_n", endpoint=public_url(self.base_url), asked=req.n, got=len(first))
        params.n_honoured = False
        return first + await self._fan_out(req, req.n - len(first))

    async def _fan_out(self, req: LMRequest, count: int) -> list[Completion]:
        results: list[list[Completion]] = [[] for _ in range(count)]

        async def one(i: int) -> None:
            results[i] = (await self._call(req, 1))[:1]

        try:
            async with anyio.create_task_group() as tg:
                for i in range(count):
                    tg.start_soon(one, i)
        except BaseExceptionGroup as eg:
            raise _first_lm_error(eg) from None
        return [c for part in results for c in part]

    async def _call(self, req: LMRequest, n: int) -> list[Completion]:
        """One logical call with retries; fatal errors become ``LMFatalError`` at once, a 400
        naming a refused parameter is learned and the call is sent again without it."""
        params = self.params(req.model)
        while True:
            try:
                return await self._retrying(req, n, params)
            except openai.APIStatusError as e:
                if e.status_code in (400, 422):
                    learned = params.adapt(_server_message(e))
                    if learned is not None:
                        log.warning(
                            "lm.endpoint_adapted",
                            endpoint=public_url(self.base_url),
                            model=req.model,
                            change=learned,
                            server_said=self._scrub(_server_message(e))[:200],
                        )
                        if learned == "no n":
                            return await self._fan_out(req, n) if n > 1 else await self._retrying(req, 1, params)
                        continue
                raise self._fatal(e, req) from e

    async def _retrying(self, req: LMRequest, n: int, params: EndpointParams) -> list[Completion]:
        """The call under the retry policy. The first attempt runs bare (most calls succeed at
        once, and building tenacity's machinery per call cost ~80 us); when it fails with a
        retryable error, tenacity takes over with that failure as its attempt 1, so waits,
        attempt numbers, logs and the final ``LMUnavailable`` are exactly tenacity's."""
        try:
            return await self._attempt(req, n, params)
        except Exception as e:
            if not should_retry(e):
                raise
            first: list[BaseException] = [e]

        async def attempt() -> list[Completion]:
            if first:
                raise first.pop()
            return await self._attempt(req, n, params)

        retrying = AsyncRetrying(
            retry=retry_if_exception(should_retry),
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=PolicyWait(self.retry),
            sleep=anyio.sleep,
            before_sleep=self._before_sleep,
            reraise=False,
        )
        try:
            async for try_ in retrying:
                with try_:
                    return await attempt()
        except RetryError as e:
            last = e.last_attempt.exception()
            raise LMUnavailable(
                f"{public_url(self.base_url)} kept failing after {self.retry.max_attempts} attempts; "
                f"last error: {self._scrub(_describe_exc(last, self.timeout))}",
                attempts=self.retry.max_attempts,
                kind=_transient_kind(last),
                status=getattr(last, "status_code", None),
            ) from last
        raise AssertionError("unreachable")  # pragma: no cover

    def _kwargs(self, req: LMRequest, n: int, params: EndpointParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": req.model, "messages": req.message_dicts}
        if params.temperature:
            kwargs["temperature"] = req.temperature
        if n != 1:
            kwargs["n"] = n
        elif params.n:
            kwargs["n"] = 1
        if req.max_tokens is not None:
            kwargs[params.token_param] = req.max_tokens
        if req.top_p is not None and params.temperature:
            kwargs["top_p"] = req.top_p
        if req.stop is not None:
            kwargs["stop"] = list(req.stop)
        if req.seed is not None and params.seed:
            kwargs["seed"] = req.seed
        if params.reasoning_effort is not None:
            kwargs["reasoning_effort"] = params.reasoning_effort
        return kwargs

    async def _attempt(self, req: LMRequest, n: int, params: EndpointParams) -> list[Completion]:
        kwargs = self._kwargs(req, n, params)
        async with self._get_limiter():
            self.http_calls += 1
            body = await self._post(kwargs)
        return parse_reply(body, req, n)

    async def _post(self, kwargs: dict[str, Any]) -> bytes:
        """The HTTP exchange, with a warning if the endpoint stays silent for ``stall_warn_s``."""
        model = kwargs["model"]
        start = time.monotonic()
        # A timer, not a task: it cannot outlive the exchange (cancelled in ``finally``) and
        # costs a heap entry where a task group per call cost ~0.2 ms of CPU. The backend runs on
        # asyncio (as the SDK's aiohttp transport does).
        timer = asyncio.get_running_loop().call_later(self.stall_warn_s, self._warn_stalled, model, start)
        try:
            return await self._exchange(kwargs)
        finally:
            timer.cancel()

    async def _exchange(self, kwargs: dict[str, Any]) -> bytes:
        # The SDK's generic POST, not ``chat.completions.create``: the body is plain JSON data
        # already, and create's parameter transform cost a third of the client's CPU per call
        # (``bench lm``); serialised here once, as bytes (the SDK's own encoder is slower).
        # Status errors, timeouts and connection errors are the SDK's own.
        client = self._get_client()
        content = json.dumps(kwargs).encode()
        try:
            raw = await client.post("/chat/completions", content=content, cast_to=httpx2.Response)
        except openai.APITimeoutError as e:
            if _lost_connection(e):
                raise openai.APIConnectionError(message=f"connection lost: {e.__cause__}", request=e.request) from e
            raise
        try:
            return raw.content
        except Exception as e:  # the transport's own error types vary (httpx, httpx2)
            raise openai.APIConnectionError(message=f"connection closed mid-body: {e}", request=raw.request) from e

    def _warn_stalled(self, model: str, start: float) -> None:
        log.warning(
            "lm.stalled",
            endpoint=public_url(self.base_url),
            model=model,
            waited_s=round(time.monotonic() - start, 1),
            timeout_s=self.timeout,
            message=f"no answer from the endpoint for {self.stall_warn_s:g} s; giving up on this attempt "
            f"after lm.timeout_s={self.timeout:g} s",
        )

    def _before_sleep(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "lm.retry",
            endpoint=public_url(self.base_url),
            attempt=state.attempt_number,
            of=self.retry.max_attempts,
            wait_s=round(state.upcoming_sleep, 3),
            error=self._scrub(_describe_exc(exc, self.timeout)),
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
            kind = "auth"
            hint = (
                f"the endpoint {url} rejected the API key (HTTP 401); set OPENAI_API_KEY (or the variable "
                f"named by lm.api_key_env) to a valid key"
            )
        elif status == 403:
            kind = "auth"
            hint = f"the key has no access to model {req.model!r} at {url} (HTTP 403); use a key or model it may use"
        elif status == 404:
            kind = "model"
            hint = (
                f"model {req.model!r} was not found at {url} (HTTP 404); check the model name (lm.model in the "
                f"run config, --model or OPENAI_MODEL) against the endpoint's model list (GET {url}/models, or "
                f"`stop lm check`), and that OPENAI_BASE_URL ends in /v1"
            )
        elif status == 429:
            kind = "quota"
            hint = f"the account behind the key has no quota left at {url} (HTTP 429 insufficient_quota)"
        else:
            kind = "request"
            hint = (
                f"the endpoint {url} refused the request for model {req.model!r} (HTTP {status}); check the "
                f"lm section of the run config (max_tokens, lm.reasoning_effort) against what the model accepts"
            )
        return LMFatalError(f"{hint}. Server said: {detail}", status=status, kind=kind, server_message=detail)


def _http_client(timeout: float) -> httpx2.AsyncClient | None:
    """The SDK's aiohttp-backed HTTP client (its ``aiohttp`` extra), or None for the SDK's
    default when aiohttp is not installed. Same SDK, same error types; aiohttp's connection pool
    and C HTTP parser cost about half the CPU per call of httpx's pure-Python ones."""
    try:
        return openai.DefaultAioHttpClient(timeout=timeout)
    except RuntimeError:  # "you must have installed the package with the `aiohttp` extra"
        return None


def _lost_connection(e: openai.APITimeoutError) -> bool:
    """Whether a "timeout" from the aiohttp transport is really a lost connection.

    The SDK's aiohttp adapter maps every ``aiohttp.ClientConnectionError`` that is not a
    timeout (the server closed the connection, a reset) to httpx's ``ConnectTimeout``; the
    original error is kept as the cause. Such a failure is a connection error, not a timeout:
    it is retried the same, but reported as what it was."""
    cause = e.__cause__
    if not isinstance(cause, httpx2.ConnectTimeout):
        return False
    origin = cause.__cause__
    if origin is None or isinstance(origin, (TimeoutError, asyncio.TimeoutError)):
        return False
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - the cause came from aiohttp
        return False
    return isinstance(origin, aiohttp.ClientConnectionError) and not isinstance(origin, aiohttp.ServerTimeoutError)


def _first_lm_error(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a fan-out reports: a fatal one first, else any lm error, else the group."""
    leaves: list[BaseException] = []

    def walk(g: BaseException) -> None:
        if isinstance(g, BaseExceptionGroup):
            for x in g.exceptions:
                walk(x)
        else:
            leaves.append(g)

    walk(eg)
    for cls in (LMFatalError, LMError):
        for x in leaves:
            if isinstance(x, cls):
                return x
    return eg


def parse_reply(body: bytes, req: LMRequest, n: int) -> list[Completion]:
    """Validate an HTTP 200 body as a chat completion; ``MalformedReply`` says what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        snippet = " ".join(body[:120].decode("utf-8", "replace").split())
        raise MalformedReply(f"HTTP 200 with a body that is not JSON: {snippet!r}") from None
    if not isinstance(data, dict):
        raise MalformedReply(f"HTTP 200 with a JSON {type(data).__name__}, not a chat completion object")
    choices = data.get("choices")
    if not isinstance(choices, list):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            raise MalformedReply(f"HTTP 200 carrying an error: {str(err['message'])[:200]}")
        raise MalformedReply(f"HTTP 200 whose 'choices' is {type(choices).__name__}, not a list")
    if not choices:
        raise MalformedReply("HTTP 200 with no choices ('choices' is empty)")
    parsed: list[tuple[int, str, str | None]] = []
    for pos, ch in enumerate(choices):
        if not isinstance(ch, dict) or not isinstance(ch.get("message"), dict):
            raise MalformedReply(f"HTTP 200 whose choice {pos} is not an object with a 'message'")
        content = ch["message"].get("content")
        finish = ch.get("finish_reason")
        finish = str(finish) if finish is not None else None
        if content is None:
            if finish != "length":
                raise MalformedReply(f"HTTP 200 whose choice {pos} has no content (null), finish_reason {finish!r}")
            content = ""  # the token budget went to reasoning: recorded as its own outcome
        if not isinstance(content, str):
            raise MalformedReply(f"HTTP 200 whose choice {pos} content is {type(content).__name__}, not text")
        index = ch.get("index")
        parsed.append((index if isinstance(index, int) and not isinstance(index, bool) else pos, content, finish))
    parsed.sort(key=lambda t: t[0])
    texts = [t for _, t, _ in parsed]
    prompt, completion, note = _usage(data.get("usage"), req, texts)
    k = len(parsed)
    out = []
    for i, (_, text, finish) in enumerate(parsed):
        share = completion // k + (1 if i < completion % k else 0)
        out.append(
            Completion(
                text=text,
                prompt_tokens=prompt if i == 0 else 0,
                completion_tokens=share,
                finish_reason="length" if finish == "length" else finish,
                usage_note=note,
            )
        )
    return out


def _usage(usage: Any, req: LMRequest, texts: list[str]) -> tuple[int, int, str | None]:
    """(prompt, completion, note): the endpoint's figures when believable, else estimates.

    Missing usage is estimated (note "estimated"); negative, non-integer or absurd figures are
    replaced by the estimate (note "clamped"): spend accounting never trusts a bogus count.
    """

    def estimate_prompt() -> int:
        return sum(count_tokens(str(m.get("content", ""))) for m in req.message_dicts)

    def estimate_completion() -> int:
        return sum(count_tokens(t) for t in texts)

    if not isinstance(usage, dict):
        return estimate_prompt(), estimate_completion(), "estimated"
    values = []
    bad = False
    for name, est in (("prompt_tokens", estimate_prompt), ("completion_tokens", estimate_completion)):
        v = usage.get(name)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= ABSURD_TOKENS:
            values.append(v)
        else:
            bad = True
            values.append(est())
    if bad:
        log.warning("lm.usage_clamped", usage=str(usage)[:200], used=values)
    return values[0], values[1], "clamped" if bad else None


def _server_message(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return str(e)[:300]


def _transient_kind(exc: BaseException | None) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit"
    if isinstance(exc, openai.APIStatusError):
        return "server"
    if isinstance(exc, MalformedReply):
        return "malformed"
    return "unavailable"


def _describe_exc(exc: BaseException | None, timeout: float) -> str:
    if exc is None:
        return "<none>"
    if isinstance(exc, openai.APITimeoutError):
        return f"no answer within lm.timeout_s={timeout:g} s"
    status = getattr(exc, "status_code", None)
    prefix = f"HTTP {status} " if status is not None else ""
    return f"{prefix}{type(exc).__name__}: {str(exc)[:200]}"
