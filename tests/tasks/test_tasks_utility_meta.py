"""The host-side utility budget, the improver-facing utility, and the meta-utility config."""

from __future__ import annotations

import ast
from typing import Any

import anyio
import pytest

from sandbox import Job, JobResult
from tasks import (
    BudgetExceeded,
    ConfigError,
    HostUtility,
    ImproverBudget,
    MetaTask,
    MetaUtilityConfig,
    UtilityBudget,
    get_task,
)
from tasks.meta import meta_utility_value


def test_budget_counts_down_and_refuses_past_zero() -> None:
    budget = UtilityBudget(2)
    assert (budget.charge(), budget.charge()) == (1, 2)
    assert budget.remaining == 0
    with pytest.raises(BudgetExceeded, match="all 2 uses have been spent"):
        budget.charge()
    assert budget.used == 2


def test_budget_cannot_be_rearmed() -> None:
    budget = UtilityBudget(1)
    for attr in ("used", "total", "remaining"):
        with pytest.raises(AttributeError):
            setattr(budget, attr, 100)
    with pytest.raises(AttributeError):
        budget.reset = lambda: None  # type: ignore[attr-defined]
    assert not any(name for name in dir(budget) if "reset" in name or "rearm" in name)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_budget_rejects_malformed_totals(bad: Any) -> None:
    with pytest.raises(ValueError):
        UtilityBudget(bad)


class CannedRunner:
    """A fake at the sandbox seam: answers every job with the same recorded result."""

    def __init__(self, result: JobResult) -> None:
        self.result = result
        self.jobs: list[Job] = []

    async def run(self, job: Job) -> JobResult:
        self.jobs.append(job)
        return self.result


def test_host_utility_exposes_only_val_scores_and_charges() -> None:
    task = get_task("parity_noiseless")
    runner = CannedRunner(JobResult(status="ok", encoded_value=[0] * 20, call_time_s=0.001))
    utility = HostUtility(task, runner, UtilityBudget(2))

    async def main() -> list[float]:
        return [await utility("def algorithm(*a):\n    return [0] * 20\n"), await utility("")]

    scores = anyio.run(main)
    assert all(type(s) is float for s in scores) and scores[1] == 0.0
    assert len(runner.jobs) == task.split_sizes["val"]  # the empty program costs a use, no jobs
    assert [e.split for e in utility.history] == ["val", "val"]
    assert utility.budget.remaining == 0
    with pytest.raises(BudgetExceeded):
        anyio.run(utility, "x")
    assert utility.description == task.description


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


def test_improver_session_sees_only_val_scores_and_cannot_overspend() -> None:
    """A guest program calls its utility proxy past the budget and tries to re-arm it."""
    from sandbox import Job, SandboxConfig, SandboxPool

    task = get_task("parity_noiseless")
    program = (
        "def improve_algorithm(initial_solution, utility, language_model):\n"
        "    scores = [utility(initial_solution)]\n"
        "    try:\n"
        "        utility._Utility__remaining = 100\n"
        "    except Exception:\n"
        "        pass\n"
        "    try:\n"
        "        scores.append(utility(initial_solution))\n"
        "        scores.append(utility(initial_solution))\n"
        "    except Exception as exc:\n"
        "        scores.append(str(exc))\n"
        "    return scores\n"
    )

    async def main() -> tuple[JobResult, HostUtility]:
        async with SandboxPool(SandboxConfig(workers=1)) as pool:
            host = HostUtility(task, pool, UtilityBudget(2))
            job = Job(
                program=program,
                function="improve_algorithm",
                args=[task.seed_solution, host.proxy(), None],
                wall_timeout_s=60.0,
            )
            return await pool.run_session(job, host.handle_request), host

    result, host = anyio.run(main)
    assert result.status == "ok", result.error
    first, second, refusal = result.value
    assert type(first) is float and first == host.history[0].utility
    assert second == host.history[1].utility
    assert "budget exhausted" in refusal
    assert host.budget.used == 2 and [e.split for e in host.history] == ["val", "val"]
