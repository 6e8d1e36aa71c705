"""``stop estimate``: upper bounds computed from the config's budgets, per generation and total."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(argv) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_self_improve_bounds_follow_the_budgets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = {
        "max_tokens": 100,
        "lm": {"model": "gpt-4o-mini"},
        "meta_utility": {
            "tasks": ["parity_noise"],
            "runs": 2,
            "meta_utility_budget": 3,
            "improver": {"responses_per_call": 3, "lm_calls": 2, "utility_calls": 4},
        },
        "max_cost_usd": 1.5,
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    out = _run(
        ["estimate", "--config", str(path), "--prompt-tokens", "10", "self-improve", "--generations", "2", "--json"],
        capsys,
    )
    g = out["per_generation"]
    assert isinstance(g, dict)
    # sessions: current improver scored (2) + generation (1) + 3 meta calls x 2 + candidate scored (2)
    assert g["improver_sessions"] == 1 + (3 + 2) * 2
    assert g["lm_calls"] == 11 * 2 and g["completions"] == 11 * 2 * 3
    assert g["completion_tokens"] == 66 * 100 and g["prompt_tokens"] == 66 * 10
    assert g["cost_usd"] == pytest.approx(660 * 0.00015 / 1000 + 6600 * 0.0006 / 1000)
    total = out["total"]
    assert isinstance(total, dict) and total["lm_calls"] == 44 and out["generations"] == 2
    assert out["caps"] == {"max_cost_usd": 1.5, "max_tokens_total": None, "max_lm_calls": None}


def test_improve_and_transfer(capsys: pytest.CaptureFixture[str]) -> None:
    imp = _run(["estimate", "improve", "--task", "parity_noise", "--json"], capsys)
    tra = _run(["estimate", "transfer", "--improver", "seed", "--tasks", "parity_noise", "maxcut", "--json"], capsys)
    assert imp["per_generation"]["improver_sessions"] == 1  # type: ignore[index]
    assert tra["per_generation"]["improver_sessions"] == 4  # type: ignore[index]
    assert imp["price_per_1k"] == [0.0, 0.0]  # offline: free
