"""The OpenAI-compatible backend driven through the real openai client against a fake endpoint."""

from __future__ import annotations

import anyio
import openai
import pytest
from lmtest_helpers import make_backend
from structlog.testing import capture_logs

from lm import LMFatalError, LMRequest, LMService, LMUnavailable, RetryPolicy, should_retry
from lm.fake_server import FakeOpenAIServer, Fault
from store import MemoryStore

CHAT = "/v1/chat/completions"
KEY = "test-key-0123"


def req(text: str = "hello", n: int = 1, **kw: object) -> LMRequest:
    return LMRequest(model="fake-model", messages=[{"role": "user", "content": text}], n=n, **kw)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_n_choices_and_usage(server: FakeOpenAIServer) -> None:
    """n > 1 comes back as n completions whose token shares sum to the billed usage."""
    server.set(replies=["alpha beta", "gamma", "delta epsilon zeta"])
    async with make_backend(server) as backend:
        out = await backend.complete(req("count these words", n=3))
    assert [c.text for c in out] == ["alpha beta", "gamma", "delta epsilon zeta"]
    assert sum(c.prompt_tokens for c in out) == 3
    assert sum(c.completion_tokens for c in out) == 6
    assert server.count(CHAT) == 1
    body = server.bodies[0]
    assert body["n"] == 3 and body["model"] == "fake-model" and body["max_tokens"] == 1024
    assert backend.honours_n is True


TRANSIENT = [
    pytest.param(Fault.rate_limit(retry_after=0.02), id="429-retry-after"),
    pytest.param(Fault.server_error(500), id="500"),
    pytest.param(Fault.unavailable(), id="503"),
    pytest.param(Fault.slow(1.5), id="slow-timeout"),
    pytest.param(Fault.drop(), id="dropped-connection"),
    pytest.param(Fault.malformed(), id="malformed-json"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("fault", TRANSIENT)
async def test_transient_fault_recovers_once_recorded(server: FakeOpenAIServer, fault: Fault) -> None:
    """Each transient fault is retried; the call is answered once and cached once."""
    store = MemoryStore()
    svc = LMService(make_backend(server, timeout=0.5), store)
    server.inject(fault)
    async with svc:
        ans = await svc.complete(req("x"), 0, cause="ev-1")
    assert ans.source == "live" and len(ans.completions) == 1
    assert server.count(CHAT) == 2
    async with svc:
        again = await svc.complete(req("x"), 0, cause="ev-1")
    assert again.source == "cache" and again.texts == ans.texts
    assert server.count(CHAT) == 2
    assert await store.cache_get(ans.cache_key) == ans.record


@pytest.mark.anyio
async def test_many_concurrent_calls_with_mixed_faults_lose_nothing(server: FakeOpenAIServer) -> None:
    """30 concurrent calls under a stream of faults: 30 answers, 30 distinct cache rows."""
    store = MemoryStore()
    svc = LMService(
        make_backend(
            server,
            timeout=0.5,
            concurrency=6,
            retry=RetryPolicy(max_attempts=8, initial_backoff=0.01, max_backoff=0.05),
        ),
        store,
    )
    faults = [
        Fault.rate_limit(0.01),
        Fault.server_error(502),
        Fault.drop(),
        Fault.malformed(),
        Fault.unavailable(),
        Fault.slow(1.0),
    ]
    server.inject(*faults)
    answers = {}

    async def one(i: int) -> None:
        answers[i] = await svc.complete(req(f"task {i % 10}"), i // 10, cause=f"ev-{i}")

    async with svc, anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(one, i)
    assert len(answers) == 30
    keys = {a.cache_key for a in answers.values()}
    assert len(keys) == 30
    for a in answers.values():
        assert await store.cache_get(a.cache_key) == a.record
    assert server.count(CHAT) == 30 + len(faults)
    assert server.pending_faults == 0


@pytest.mark.anyio
async def test_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    """The retry after a 429 waits at least the server's Retry-After."""
    server.inject(Fault.rate_limit(retry_after=0.3))
    async with make_backend(server) as backend:
        await backend.complete(req())
    first, second = server.requests
    assert second.at - first.at >= 0.3


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("srv_kw", "needle"),
    [
        pytest.param({"api_key": "the-right-key"}, "OPENAI_API_KEY", id="401-bad-key"),
        pytest.param({"models": ["other-model"]}, "'fake-model' was not found", id="404-unknown-model"),
    ],
)
async def test_fatal_errors_fail_fast(srv_kw: dict[str, object], needle: str) -> None:
    """401 and 404 are not retried: exactly one request, and the message says what to fix."""
    with FakeOpenAIServer(**srv_kw) as srv:  # type: ignore[arg-type]
        async with make_backend(srv) as backend:
            with capture_logs() as logs, pytest.raises(LMFatalError) as info:
                await backend.complete(req())
        assert srv.count(CHAT) == 1
        assert needle in str(info.value)
        assert KEY not in str(info.value) and KEY not in repr(logs)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fault", [Fault.unauthorized(), Fault.unknown_model(), Fault.bad_request(), Fault.quota_exhausted()]
)
async def test_injected_fatal_statuses_are_single_requests(server: FakeOpenAIServer, fault: Fault) -> None:
    server.inject(fault)
    async with make_backend(server) as backend:
        with pytest.raises(LMFatalError) as info:
            await backend.complete(req())
    assert info.value.status == fault.status
    assert server.count(CHAT) == 1


@pytest.mark.anyio
async def test_retries_are_bounded(server: FakeOpenAIServer) -> None:
    """A fault that persists exhausts the policy: LMUnavailable after max_attempts requests."""
    server.inject(*[Fault.server_error(500)] * 10)
    backend = make_backend(server, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02))
    async with backend:
        with capture_logs() as logs, pytest.raises(LMUnavailable) as info:
            await backend.complete(req())
    assert server.count(CHAT) == 3
    assert "3 attempts" in str(info.value)
    assert [e["event"] for e in logs].count("lm.retry") == 2
    assert KEY not in repr(logs)


@pytest.mark.anyio
async def test_ignored_n_is_detected_and_fanned_out() -> None:
    """An endpoint that ignores n: the rest is fetched by fan-out, then fan-out is used at once."""
    with FakeOpenAIServer(ignore_n=True) as srv:
        async with make_backend(srv) as backend:
            out = await backend.complete(req(n=4))
            out2 = await backend.complete(req("again", n=3))
        assert len(out) == 4 and len({c.text for c in out}) == 4
        assert [b["n"] for b in srv.bodies][:4] == [4, 1, 1, 1]
        assert backend.honours_n is False
        assert len(out2) == 3
        assert [b["n"] for b in srv.bodies][4:] == [1, 1, 1]


@pytest.mark.anyio
async def test_concurrency_limit_per_endpoint() -> None:
    with FakeOpenAIServer(latency=0.05) as srv:
        async with make_backend(srv, concurrency=2) as backend, anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(backend.complete, req(f"m{i}"))
        assert srv.count(CHAT) == 8
        assert srv.max_in_flight <= 2


def test_key_never_in_repr_or_describe() -> None:
    from lm import OpenAICompatibleBackend

    b = OpenAICompatibleBackend(base_url="http://user:pw@example.invalid:8000/v1", api_key="sk-secret-123", model="m")
    text = repr(b) + repr(b.describe())
    assert "sk-secret-123" not in text and "pw@" not in text
    assert b.describe()["api_key_set"] is True
    assert "sk-secret-123" not in repr(req().canonical())


def test_should_retry_classification() -> None:
    """One function classifies every error; non-endpoint errors are never retried."""
    import httpx2

    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")

    def status(code: int, body: object = None) -> openai.APIStatusError:
        resp = httpx2.Response(code, request=request)
        cls = {
            400: openai.BadRequestError,
            401: openai.AuthenticationError,
            404: openai.NotFoundError,
            429: openai.RateLimitError,
            500: openai.InternalServerError,
        }.get(code, openai.APIStatusError)
        return cls("err", response=resp, body=body)

    assert should_retry(status(429))
    assert not should_retry(status(429, {"error": {"code": "insufficient_quota"}}))
    for code in (500, 502, 503, 504, 408):
        assert should_retry(status(code)), code
    for code in (400, 401, 403, 404, 422):
        assert not should_retry(status(code)), code
    assert should_retry(openai.APITimeoutError(request))
    assert should_retry(openai.APIConnectionError(request=request))
    assert not should_retry(ValueError("bug"))
    assert not should_retry(KeyboardInterrupt())
