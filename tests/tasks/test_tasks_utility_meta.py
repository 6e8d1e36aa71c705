"""The meta-utility config, the seed improver and the meta-utility value.

The improver-facing utility and its budget are the agents' session bridge (one implementation),
tested in tests/refapi and tests/agents."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from tasks import (
    ConfigError,
    ImproverBudget,
    MetaTask,
    MetaUtilityConfig,
)
from tasks.meta import meta_utility_value


def test_meta_defaults_match_the_reference() -> None:
    cfg = MetaUtilityConfig()
    assert cfg.tasks == ("parity_noise",) and cfg.runs == 5 and cfg.meta_utility_budget == 25
    assert cfg.improver == ImproverBudget(responses_per_call=6, lm_calls=4, utility_calls=25)
    assert MetaUtilityConfig.from_dict(cfg.to_dict()) == cfg
    text = MetaTask(cfg).description
    for fact in ("6 responses per call", "4 language-model calls", "(25)", "5 times", "parity_noise"):
        assert fact in text.replace("\n", " ").replace("  ", " ") or fact in text, fact


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"runs": 0}, "meta_utility.runs must be >= 1"),
        ({"runs": "5"}, "meta_utility.runs must be an integer"),
        ({"tasks": "parity_noise"}, "must be a list of task names"),
        ({"tasks": []}, "non-empty"),
        ({"tasks": ["lpn"]}, "unknown task"),
        ({"improver": {"lm_calls": -1}}, "improver_budget.lm_calls must be >= 1"),
        ({"improver": {"lm_call": 4}}, "unknown key"),
        ({"improver": {"timeout_s": float("nan")}}, "timeout_s"),
        ({"improver": [1, 2]}, "must be a mapping"),
        ({"budget": 25}, "unknown key"),
        ({"report_split": "train"}, "report_split"),
    ],
)
def test_meta_config_errors_are_clear(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MetaUtilityConfig.from_dict(data)


def test_meta_config_is_frozen_and_configurable() -> None:
    cfg = MetaUtilityConfig.from_dict(
        {"tasks": ["maxcut", "three_sat"], "runs": 2, "improver": {"lm_calls": 3, "timeout_s": 60}}
    )
    assert cfg.tasks == ("maxcut", "three_sat") and cfg.improver.lm_calls == 3
    with pytest.raises(AttributeError):
        cfg.runs = 9  # type: ignore[misc]


def test_seed_improver_is_a_program_defining_improve_algorithm() -> None:
    """Parsed, never executed here: improvers run only in the sandbox."""
    tree = ast.parse(MetaTask.seed_solution)
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"improve_algorithm", "extract_code"} <= names
    assert MetaTask.function_name == "improve_algorithm"


def test_meta_utility_value_is_a_clamped_mean() -> None:
    assert meta_utility_value([]) == 0.0
    assert meta_utility_value([0.5, 1.0, float("nan"), 2.0]) == pytest.approx(2.5 / 4)
