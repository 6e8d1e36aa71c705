"""Budgets stop exactly at their limits; the STOP interface groups batches like the reference."""

from __future__ import annotations

import pytest
from lmtest_helpers import make_backend, program

from events.lm_events import LMBudgetExceeded
from lm import (
    BudgetExceeded,
    BudgetState,
    CacheMode,
    LMBudget,
    LMRequest,
    LMService,
    OfflineMutationModel,
    StopLanguageModel,
    UnpricedModel,
)
from lm._budget import fold
from lm.fake_server import FakeOpenAIServer
from store import MemoryStore

CODE_MSG = f"Improve:\n```python\n{program('lpn_seed')}```"


def offline_lm(budget: LMBudget, **kw: object) -> StopLanguageModel:
    return StopLanguageModel(LMService(OfflineMutationModel(), MemoryStore()), budget, **kw)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_call_budget_stops_exactly_at_the_limit(server: FakeOpenAIServer) -> None:
    """max_calls=4: four calls go out, the fifth raises before any request is sent."""
    async with LMService(make_backend(server), MemoryStore()) as svc:
        lm = StopLanguageModel(svc, LMBudget(max_calls=4), model="fake-model")
        for i in range(4):
            await lm.prompt("e", f"m{i}", n_responses=2)
        with pytest.raises(BudgetExceeded) as info:
            await lm.prompt("e", "m5")
    assert server.count("/v1/chat/completions") == 4
    assert info.value.limit == "calls" and info.value.used == 4 and info.value.limit_value == 4
    assert "calls limit is 4, 4 used" in str(info.value)
    assert lm.times_used == 4 and lm.budget == 4


@pytest.mark.anyio
async def test_completion_budget_never_shrinks_n() -> None:
    lm = offline_lm(LMBudget(max_completions=10))
    for _ in range(3):
        await lm.prompt("e", CODE_MSG, n_responses=3)
    with pytest.raises(BudgetExceeded, match="completions limit is 10, 9 used, this call needs 2"):
        await lm.prompt("e", CODE_MSG, n_responses=2)
    assert lm.state.completions == 9
    await lm.prompt("e", CODE_MSG, n_responses=1)
    assert lm.state.completions == 10


@pytest.mark.anyio
async def test_token_budget_allows_calls_until_reached() -> None:
    """Tokens are charged in full; the first call after the limit is reached raises."""
    lm = offline_lm(LMBudget(max_tokens=1000))
    seen = []
    with pytest.raises(BudgetExceeded) as info:
        while True:
            seen.append(lm.state.tokens)
            await lm.prompt("e", CODE_MSG)
    assert all(t < 1000 for t in seen[:-1]) and seen[-1] == lm.state.tokens >= 1000
    assert info.value.limit == "tokens" and info.value.used == lm.state.tokens


@pytest.mark.anyio
async def test_cost_cap_uses_price_table() -> None:
    model = OfflineMutationModel().default_model
    budget = LMBudget(max_cost_usd=0.01, prices={model: (1.0, 2.0)})
    lm = offline_lm(budget)
    with pytest.raises(BudgetExceeded, match="cost_usd"):
        for _ in range(100):
            await lm.prompt("e", CODE_MSG)
    s = lm.state
    assert s.cost_usd == pytest.approx(s.prompt_tokens * 1.0 / 1000 + s.completion_tokens * 2.0 / 1000)
    with pytest.raises(UnpricedModel, match="prices"):
        await offline_lm(LMBudget(max_cost_usd=1.0)).prompt("e", CODE_MSG)


@pytest.mark.anyio
async def test_refusal_is_recorded_as_an_event() -> None:
    store = MemoryStore()
    lm = StopLanguageModel(
        LMService(OfflineMutationModel(), store), LMBudget(max_calls=1), run_id="run-1", cause="ev-improve"
    )
    await lm.prompt("e", CODE_MSG)
    with pytest.raises(BudgetExceeded):
        await lm.batch_prompt("e", [CODE_MSG] * 2)
    (ev,) = await store.read("run-1")
    data = ev.data
    assert isinstance(data, LMBudgetExceeded)
    assert ev.causation_id == "ev-improve" and data.limit == "calls" and data.state["calls"] == 1


@pytest.mark.anyio
async def test_state_is_a_fold_over_answers() -> None:
    """Rebuilding the state from the recorded answers gives the state the interface kept."""
    answers: list[list[object]] = []
    svc = LMService(OfflineMutationModel(), MemoryStore())
    lm = StopLanguageModel(svc, LMBudget())
    await lm.prompt("e", CODE_MSG, n_responses=2)
    await lm.batch_prompt("e", [CODE_MSG, "x", CODE_MSG])
    # replay the same calls through the cache and fold
    replay = LMService(None, svc.store, CacheMode.REPLAY)
    m = OfflineMutationModel().default_model
    r1 = await replay.answer(
        LMRequest(model=m, messages=[{"role": "system", "content": "e"}, {"role": "user", "content": CODE_MSG}], n=2), 0
    )
    r2 = await replay.answer(
        LMRequest(model=m, messages=[{"role": "system", "content": "e"}, {"role": "user", "content": CODE_MSG}], n=2), 1
    )
    r3 = await replay.answer(
        LMRequest(model=m, messages=[{"role": "system", "content": "e"}, {"role": "user", "content": "x"}], n=1), 0
    )
    answers = [[r1], [r2, r3]]
    assert fold(answers) == lm.state  # type: ignore[arg-type]
    assert BudgetState.from_dict(lm.state.to_dict()) == lm.state
    assert lm.state.calls == 2 and lm.state.requests == 3 and lm.state.completions == 5


@pytest.mark.anyio
async def test_batch_prompt_groups_identical_messages_and_keeps_order() -> None:
    """[a, b, a, c, a] -> three requests with n = 3, 1, 1; replies come back in input order."""

    def replies(body: dict[str, object]) -> list[str]:
        msg = body["messages"][-1]["content"]  # type: ignore[index]
        return [f"{msg}:{i}" for i in range(int(body["n"]))]  # type: ignore[call-overload]

    with FakeOpenAIServer(replies=replies) as srv:
        async with LMService(make_backend(srv), MemoryStore()) as svc:
            lm = StopLanguageModel(svc, LMBudget(max_calls=1), model="fake-model")
            out = await lm.batch_prompt("expert", ["a", "b", "a", "c", "a"], temperature=0.4)
        bodies = sorted((b["messages"][-1]["content"], b["n"], b["temperature"]) for b in srv.bodies)
    assert out == ["a:0", "b:0", "a:1", "c:0", "a:2"]
    assert bodies == [("a", 3, 0.4), ("b", 1, 0.4), ("c", 1, 0.4)]
    assert lm.state.calls == 1 and lm.state.requests == 3 and lm.state.completions == 5


@pytest.mark.anyio
async def test_prompt_sends_expertise_as_system_message(server: FakeOpenAIServer) -> None:
    async with LMService(make_backend(server), MemoryStore()) as svc:
        lm = StopLanguageModel(svc, LMBudget(), model="fake-model", max_tokens=256)
        out = await lm.prompt("you are an expert", "improve it", n_responses=3, temperature=1.0)
    assert len(out) == 3
    (body,) = server.bodies
    assert body["messages"] == [
        {"role": "system", "content": "you are an expert"},
        {"role": "user", "content": "improve it"},
    ]
    assert body["n"] == 3 and body["temperature"] == 1.0 and body["max_tokens"] == 256
