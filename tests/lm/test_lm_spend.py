"""The committed-spend ledger: caps never crossed, in-flight worst cases counted, prices."""

from __future__ import annotations

from lm import LMRequest, SpendCaps, SpendLedger, price_for, price_snapshot
from lm._spend import worst_case_tokens


def req(max_tokens: int = 100, n: int = 1, model: str = "m") -> LMRequest:
    return LMRequest(model=model, messages=[{"role": "user", "content": "one two three"}], max_tokens=max_tokens, n=n)


def test_calls_cap_counts_in_flight() -> None:
    ledger = SpendLedger(SpendCaps(max_lm_calls=2))
    assert ledger.reserve("a", req()) is None
    assert ledger.reserve("b", req()) is None
    hit = ledger.reserve("c", req())  # two in flight: a third would be the 3rd call
    assert hit is not None and hit.cap == "max_lm_calls" and hit.limit == 2
    assert ledger.exhausted_now() is None  # in-flight work finishes first
    ledger.settle("a", "m", 3, 10)
    ledger.settle("b", "m", 3, 10)
    done = ledger.exhausted_now()
    assert done is not None and done.spent.calls == 2 and done.spent.tokens == 26
    assert "max_lm_calls=2" in done.message("run-1") and "stop resume run-1 --max-lm-calls" in done.message("run-1")


def test_token_cap_uses_worst_case_then_actual() -> None:
    prompt, completion = worst_case_tokens(req(max_tokens=100, n=2))
    assert completion == 200 and prompt >= 6
    ledger = SpendLedger(SpendCaps(max_tokens_total=2 * (prompt + completion) - 1))
    assert ledger.reserve("a", req(n=2)) is None
    assert ledger.reserve("b", req(n=2)) is not None  # worst cases would pass the cap
    ledger.hit = None
    ledger.settle("a", "m", 5, 20)  # the real reply was small: room again
    assert ledger.reserve("b", req(n=2)) is None


def test_cost_cap_with_prices_and_raise() -> None:
    prices = {"m": [1.0, 2.0]}  # USD per 1k tokens
    ledger = SpendLedger(SpendCaps(max_cost_usd=0.25), prices=prices)
    assert ledger.reserve("a", req(max_tokens=100)) is None  # worst ~ 0.2 + prompt
    hit = ledger.reserve("b", req(max_tokens=100))
    assert hit is not None and hit.cap == "max_cost_usd"
    ledger.settle("a", "m", 10, 50)
    assert abs(ledger.spent.cost_usd - (0.01 + 0.1)) < 1e-9
    ledger.raise_caps(SpendCaps(max_cost_usd=1.0))
    assert ledger.hit is None and ledger.raised == 1
    assert ledger.reserve("b", req(max_tokens=100)) is None


def test_no_caps_never_refuse() -> None:
    ledger = SpendLedger(SpendCaps())
    for i in range(100):
        assert ledger.reserve(str(i), req(max_tokens=10**6)) is None


def test_prices_builtin_prefix_and_override() -> None:
    assert price_for("gpt-4o-mini") == (0.00015, 0.0006)
    assert price_for("gpt-4o-mini-2024-07-18") == (0.00015, 0.0006)  # longest prefix, not gpt-4o
    assert price_for("gpt-4o-mini", {"gpt-4o-mini": [1, 2]}) == (1.0, 2.0)
    assert price_for("my-local-model") is None
    snap = price_snapshot("gpt-4o", {"other": [1, 1]})
    assert snap == {"other": [1.0, 1.0], "gpt-4o": [0.0025, 0.01]}
