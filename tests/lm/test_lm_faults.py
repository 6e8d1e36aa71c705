"""Every fault shape of a real HTTP endpoint, classified: retried, failed, fatal or adapted."""

from __future__ import annotations

import anyio
import pytest
from lmtest_helpers import make_backend
from structlog.testing import capture_logs

from lm import LMFatalError, LMRequest, LMUnavailable, RetryPolicy
from lm.fake_server import FakeOpenAIServer, Fault

CHAT = "/v1/chat/completions"


def req(text: str = "hello", n: int = 1, **kw: object) -> LMRequest:
    return LMRequest(model="fake-model", messages=[{"role": "user", "content": text}], n=n, **kw)  # type: ignore[arg-type]


MALFORMED = [
    pytest.param(Fault.html(), "not JSON", id="html-200"),
    pytest.param(Fault.empty_choices(), "no choices", id="empty-choices"),
    pytest.param(Fault.wrong_types(), "'choices' is str", id="choices-wrong-type"),
    pytest.param(Fault.null_content(), "no content", id="null-content"),
    pytest.param(Fault.raw([1, 2]), "JSON list", id="json-list"),
    pytest.param(Fault.raw({"choices": [{"message": {"content": 7}}]}), "int, not text", id="content-int"),
    pytest.param(Fault.truncate(), "", id="closed-mid-body"),
    pytest.param(Fault.malformed(), "not JSON", id="garbled-json"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("fault", "why"), MALFORMED)
async def test_malformed_200_is_retried_then_answered(server: FakeOpenAIServer, fault: Fault, why: str) -> None:
    server.inject(fault)
    with capture_logs() as logs:
        async with make_backend(server) as backend:
            out = await backend.complete(req())
    assert len(out) == 1 and out[0].text.startswith("reply")
    assert server.count(CHAT) == 2
    retry = [e for e in logs if e["event"] == "lm.retry"]
    assert len(retry) == 1 and why in retry[0]["error"]


@pytest.mark.anyio
@pytest.mark.parametrize(("fault", "why"), MALFORMED[:4])
async def test_malformed_every_time_fails_that_request(server: FakeOpenAIServer, fault: Fault, why: str) -> None:
    """Retries are bounded; the request then fails with a classified, readable error."""
    server.inject(*[fault] * 4)
    async with make_backend(server) as backend:
        with pytest.raises(LMUnavailable) as info:
            await backend.complete(req())
    assert info.value.kind == "malformed" and info.value.attempts == 4
    assert why in str(info.value)
    assert server.count(CHAT) == 4


FATAL = [
    pytest.param(Fault.unauthorized(), 401, "auth", "OPENAI_API_KEY", id="401"),
    pytest.param(Fault("status", 403, message="forbidden (fake)"), 403, "auth", "key", id="403"),
    pytest.param(Fault.unknown_model(), 404, "model", "lm.model", id="404"),
    pytest.param(Fault.bad_request(), 400, "request", "refused the request", id="400"),
    pytest.param(Fault.quota_exhausted(), 429, "quota", "no quota", id="429-quota"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("fault", "status", "kind", "fix"), FATAL)
async def test_fatal_is_not_retried_and_names_the_fix(
    server: FakeOpenAIServer, fault: Fault, status: int, kind: str, fix: str
) -> None:
    server.inject(fault)
    async with make_backend(server) as backend:
        with pytest.raises(LMFatalError) as info:
            await backend.complete(req())
    e = info.value
    assert (e.status, e.kind) == (status, kind)
    assert fix in str(e) and fault.message in str(e)  # the endpoint's own words are kept
    assert server.count(CHAT) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("fault", [Fault.rate_limit(retry_after=0.3), Fault.server_error(500)], ids=["429", "500"])
async def test_transient_then_ok_honours_retry_after(server: FakeOpenAIServer, fault: Fault) -> None:
    server.inject(fault)
    async with make_backend(server) as backend:
        out = await backend.complete(req())
    assert len(out) == 1
    times = [r.at for r in server.requests]
    assert len(times) == 2
    if fault.retry_after:
        assert times[1] - times[0] >= 0.29  # never sooner than the server asked


@pytest.mark.anyio
async def test_endpoint_that_never_answers_times_out_and_is_reported(server: FakeOpenAIServer) -> None:
    """A hung endpoint costs timeout_s per attempt; a stall warning comes before the timeout."""
    server.inject(Fault.hang(), Fault.hang())
    backend = make_backend(server, timeout=0.6, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))
    with capture_logs() as logs:
        async with backend:
            with anyio.fail_after(10):
                with pytest.raises(LMUnavailable) as info:
                    await backend.complete(req())
    assert info.value.kind == "timeout" and "lm.timeout_s=0.6" in str(info.value)
    stalled = [e for e in logs if e["event"] == "lm.stalled"]
    assert stalled and stalled[0]["log_level"] == "warning" and stalled[0]["waited_s"] < 0.6


@pytest.mark.anyio
async def test_one_choice_for_n6_is_fanned_out_and_recorded(server: FakeOpenAIServer) -> None:
    server.set(ignore_n=True)
    async with make_backend(server) as backend:
        out = await backend.complete(req(n=6))
        assert len(out) == 6
        assert backend.honours_n is False
        assert backend.accepts()["fake-model"]["n_honoured"] is False
        before = server.count(CHAT)
        assert len(await backend.complete(req("again", n=6))) == 6
    assert before == 6  # 1 that returned one choice + 5 single calls
    assert server.count(CHAT) - before == 6  # learned: straight to fan-out


@pytest.mark.anyio
async def test_bad_usage_is_clamped_and_flagged(server: FakeOpenAIServer) -> None:
    server.inject(Fault.bad_usage(prompt=-5, completion=10**12))
    with capture_logs() as logs:
        async with make_backend(server) as backend:
            (c,) = await backend.complete(req("count me"))
    assert c.usage_note == "clamped"
    assert 0 <= c.prompt_tokens < 100 and 0 <= c.completion_tokens < 100
    assert any(e["event"] == "lm.usage_clamped" for e in logs)


@pytest.mark.anyio
async def test_length_limited_empty_reply_is_its_own_outcome(server: FakeOpenAIServer) -> None:
    server.inject(Fault.length_empty())
    async with make_backend(server) as backend:
        (c,) = await backend.complete(req())
    assert c.text == "" and c.finish_reason == "length" and c.completion_tokens == 64


@pytest.mark.anyio
async def test_reasoning_model_parameters_learned_from_400() -> None:
    """An endpoint refusing max_tokens and temperature is adapted to, once, and it is recorded."""
    with FakeOpenAIServer(reject_params=("max_tokens", "temperature")) as srv:
        async with make_backend(srv) as backend:
            (c,) = await backend.complete(req())
            assert c.text
            (c2,) = await backend.complete(req("second"))
            assert c2.text
        bodies = srv.bodies
    assert len(bodies) == 4  # two refusals, then the answer; the second request is sent right
    last = bodies[-1]
    assert "max_tokens" not in last and last["max_completion_tokens"] == 1024 and "temperature" not in last
    accepts = backend.accepts()["fake-model"]
    assert accepts["token_param"] == "max_completion_tokens" and accepts["temperature_accepted"] is False


@pytest.mark.anyio
async def test_reasoning_model_by_name(server: FakeOpenAIServer) -> None:
    async with make_backend(server) as backend:
        r = LMRequest(model="o3-mini", messages=[{"role": "user", "content": "x"}])
        await backend.complete(r)
    body = server.bodies[-1]
    assert body["max_completion_tokens"] == 1024 and "max_tokens" not in body and "temperature" not in body
