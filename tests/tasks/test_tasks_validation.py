"""Validators reject malformed output; scorers stay in [0, 1]; fold records why."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sandbox import JobResult
from tasks import Evaluation, TaskOptions, all_tasks, get_task
from tasks.checks import binary_vector, permutation

TASK_NAMES = [t.name for t in all_tasks()]


def _n(name: str) -> int:
    """The expected output length of instance 0 of val."""
    inst = get_task(name).instances("val")[0]
    return {
        "parity_noise": 20,
        "parity_noiseless": 20,
        "str_grid_dist": len(inst.args[0]),
        "modified_quadratic_assignment": 15,
        "three_sat": inst.hidden.get("n", 0) + 1,
        "maxcut": len(inst.args[0]),
    }[name]


class AlwaysEqual(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


class SubArray(np.ndarray):  # type: ignore[type-arg]
    pass


def _malformed(n: int) -> list[Any]:
    return [
        None,
        1,
        True,
        1.0,
        "1" * n,
        [],
        [0] * (n - 1),
        [0] * (n + 1),
        [float("nan")] * n,
        [float("inf")] * n,
        [10**40] * n,
        [-1] * n,
        [0.5] * n,
        [[0]] * n,
        ["0"] * n,
        [None] * n,
        [AlwaysEqual(0)] * n,
        {i: 0 for i in range(n)},
        np.zeros((n, 1), dtype=np.int64),
        np.zeros((1, n), dtype=np.int64),
        np.zeros((n, n), dtype=np.int64),
        np.full(n, np.nan),
        np.full(n, 1e308),
        np.array(["0"] * n),
        np.zeros(n, dtype=complex),
        np.zeros(n, dtype=np.int64).view(SubArray),
    ]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_validator_rejects_malformed_outputs(name: str) -> None:
    task = get_task(name)
    inst = task.instances("val")[0]
    for bad in _malformed(_n(name)):
        ok, value, reason = task.validate(inst, bad)
        assert not ok and value is None, (name, bad)
        assert reason


def test_validators_accept_plain_forms() -> None:
    for good in (
        [0, 1] * 10,
        tuple([1] * 20),
        [True] * 20,
        [0.0, 1.0] * 10,
        np.ones(20, bool),
        np.zeros(20, np.int8),
        np.ones(20),
        [np.int64(1)] * 20,
    ):
        ok, value, _ = binary_vector(good, 20)
        assert ok and value.shape == (20,) and value.dtype == np.int64
    assert permutation(list(range(15))[::-1], 15)[0]
    assert not permutation([0] * 15, 15)[0]
    assert not permutation([1.5, *list(range(1, 15))], 15)[0]


def test_str_grid_dist_validator() -> None:
    task = get_task("str_grid_dist")
    inst = task.instances("val")[0]
    t = inst.args[0]
    assert task.validate(inst, t)[0]
    for bad in (t + "A", t[:-1], t.lower(), "C" * len(t), list(t), t.encode()):
        assert not task.validate(inst, bad)[0]


def _encoded(value: Any) -> Any:
    """The sandbox's wire form of a guest value (lists and numpy arrays only, for these tests)."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.ravel().tolist()}}
    return value


def _ok(value: Any, t: float = 0.001) -> JobResult:
    return JobResult(status="ok", encoded_value=_encoded(value), call_time_s=t, wall_time_s=t + 0.05)


def test_fold_records_reasons_and_limits() -> None:
    task = get_task("parity_noiseless")
    insts = task.instances("val")[:4]
    results = [
        _ok(insts[0].hidden["test_parity"].tolist()),
        _ok(insts[1].hidden["test_parity"].tolist(), t=task.time_limit_s + 0.01),
        _ok(np.asarray(insts[2].hidden["test_parity"]).reshape(20, 1)),
        JobResult(status="error", error="Traceback...\nValueError: boom", call_time_s=0.01),
    ]
    ev = task.fold("val", results, indices=[0, 1, 2, 3])
    kinds = [o.error_kind for o in ev.instances]
    assert kinds == [None, "time_limit", "invalid", "error"]
    assert [o.score for o in ev.instances] == [1.0, 0.0, 0.0, 0.0]
    assert "shape" in ev.instances[2].reason and "boom" in ev.instances[3].reason
    assert ev.instances[0].reason == "accuracy 20/20"
    assert ev.utility == 0.25
    assert Evaluation.from_json(ev.to_json()) == ev
    assert ev.canonical_json() == task.fold("val", results, indices=[0, 1, 2, 3]).canonical_json()
    assert Evaluation.from_json(ev.canonical_json()) == ev


def test_fail_zeroes_option_reproduces_reference_quirk() -> None:
    insts = get_task("parity_noise").instances("val")
    results = [_ok(i.hidden["test_parity"].tolist()) for i in insts]
    results[3] = JobResult(status="call_timeout", error="", call_time_s=2.0)
    assert get_task("parity_noise").fold("val", results).utility == pytest.approx(19 / 20)
    strict = get_task("parity_noise", TaskOptions(fail_zeroes=True))
    assert strict.fold("val", results).utility == 0.0


def test_undecodable_output_scores_zero_with_reason() -> None:
    task = get_task("maxcut")
    bad = JobResult(status="ok", encoded_value={"__ndarray__": {"dtype": "object"}}, call_time_s=0.01)
    (outcome,) = task.fold("val", [bad], indices=[0]).instances
    assert outcome.score == 0 and outcome.error_kind == "invalid_output" and outcome.reason


def test_fold_checks_result_count() -> None:
    with pytest.raises(ValueError, match="expected 20 job results"):
        get_task("parity_noise").fold("val", [_ok([0] * 20)])


def test_str_grid_dist_seed_figure_from_host_side_values() -> None:
    """`return t` on test: 0.439 (the scorer alone; the sandboxed run is tested elsewhere)."""
    task = get_task("str_grid_dist")
    ev = task.fold("test", [_ok(i.args[0]) for i in task.instances("test")])
    assert round(ev.utility, 3) == 0.439


@pytest.mark.parametrize("name", TASK_NAMES)
def test_jobs_are_deterministic_and_carry_no_answers(name: str) -> None:
    task = get_task(name)
    program = task.seed_solution
    a, b = task.jobs(program, "val", seed=3), task.jobs(program, "val", seed=3)
    assert len(a) == task.split_sizes["val"]
    assert [j.seed for j in a] == [j.seed for j in b]
    assert len({j.seed for j in a}) == len(a)
    assert [j.seed for j in task.jobs(program, "val", seed=4)] != [j.seed for j in a]
    for job, inst in zip(a, task.instances("val"), strict=True):
        assert job.function == "algorithm" and job.program == program
        assert job.call_timeout_s == task.time_limit_s
        assert job.wall_timeout_s >= task.time_limit_s + 2
        assert len(job.args) == len(inst.args)
        for hidden in inst.hidden.values():
            if isinstance(hidden, np.ndarray):
                assert not any(
                    isinstance(arg, np.ndarray) and arg.shape == hidden.shape and np.array_equal(arg, hidden)
                    for arg in job.args
                )
        for arg, orig in zip(job.args, inst.args, strict=True):
            if isinstance(arg, np.ndarray):
                assert arg.flags.writeable and arg is not orig


def test_unknown_task_and_split_errors_are_clear() -> None:
    with pytest.raises(KeyError, match="known tasks: parity_noise"):
        get_task("nope")
    with pytest.raises(ValueError, match="unknown split 'train'"):
        get_task("maxcut").instances("train")


def test_scores_are_clamped_to_unit_interval() -> None:
    task = get_task("modified_quadratic_assignment")
    for inst in task.instances("val"):
        for perm in (list(range(15)), list(range(15))[::-1]):
            ok, value, _ = task.validate(inst, perm)
            s = task.score(inst, value)
            assert ok and math.isfinite(s) and s <= 1.0


@pytest.mark.parametrize("name", TASK_NAMES)
def test_description_states_the_contract_but_no_held_out_details(name: str) -> None:
    task = get_task(name)
    text = task.description
    assert "algorithm(" in text and "val" in text and f"{task.time_limit_s:g} s" in text
    for leak in ("5678", "4321", "test split", "secret_utility", "hidden["):
        assert leak not in text


def test_public_names_are_exported() -> None:
    import tasks

    assert isinstance(tasks.__all__, tuple)
    for name in tasks.__all__:
        assert hasattr(tasks, name), name
