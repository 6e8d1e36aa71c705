"""Seed, strong, trivial and adversarial solutions, scored for real through the sandbox.

Quality assertions for strong solutions and slow seeds use a relaxed time limit
(``with_options(time_limit_s=...)``): the scorer is the same, and a busy 2-core machine cannot
make them flaky. Timing enforcement itself is tested with programs that sleep or spin far past
the default limits.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from tasks_programs import PLANT_PATH, SIDE_EFFECT_ONLY, STRONG, TRIVIAL, adversaries
from tasks_sandbox_helpers import evaluate_many

from tasks import Evaluation, all_tasks, get_task

TASK_NAMES = [t.name for t in all_tasks()]
RELAXED_S = 10.0
ADVERSARY_INDICES = (0, 1)
TIMING_KINDS = {"time_limit", "call_timeout", "timeout", "cpu_limit"}


@pytest.fixture(scope="module")
def scored() -> dict[tuple[str, str], Evaluation]:
    """Every seed, strong and trivial solution, in one pool run."""
    specs = {}
    for name in TASK_NAMES:
        task = get_task(name)
        relaxed = task.with_options(time_limit_s=RELAXED_S)
        specs[(name, "seed")] = (task, task.seed_solution, "test", None)
        specs[(name, "seed_relaxed")] = (relaxed, task.seed_solution, "test", None)
        specs[(name, "strong")] = (relaxed, STRONG[name], "test", None)
        specs[(name, "trivial")] = (task, TRIVIAL[name], "test", None)
    keys = list(specs)
    return dict(zip(keys, evaluate_many([specs[k] for k in keys]), strict=True))


def test_str_grid_dist_seed_scores_the_reference_figure(scored: dict) -> None:
    """`return t` scores 0.439 on test, as the STOP paper reports."""
    assert round(scored[("str_grid_dist", "seed")].utility, 3) == 0.439


@pytest.mark.parametrize("name", ["parity_noise", "parity_noiseless"])
def test_parity_seed_is_a_fair_coin(name: str, scored: dict) -> None:
    ev = scored[(name, "seed")]
    assert ev.n_errors == 0
    assert 0.4 <= ev.utility <= 0.6


@pytest.mark.parametrize("name", TASK_NAMES)
def test_seed_outcomes_are_valid_or_timed_out(name: str, scored: dict) -> None:
    """At the default limits every seed outcome is a valid scored output or a timing failure,
    whatever the machine's speed; never an exception or invalid output."""
    for o in scored[(name, "seed")].instances:
        assert o.error_kind is None or o.error_kind in TIMING_KINDS, o
        assert o.reason
        if o.error_kind in TIMING_KINDS:
            assert o.score == 0.0


def test_slow_seeds_score_what_they_should_without_time_pressure(scored: dict) -> None:
    mqa = scored[("modified_quadratic_assignment", "seed_relaxed")]
    sat = scored[("three_sat", "seed_relaxed")]
    cut = scored[("maxcut", "seed_relaxed")]
    assert mqa.n_errors == sat.n_errors == cut.n_errors == 0
    assert 0.15 < mqa.utility < 0.7  # annealing beats a random permutation (~0)
    assert 0.2 < sat.utility  # the short random walk solves the small formulas
    assert 0.55 < cut.utility < 0.8  # greedy beats a random cut (~0.5)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_strong_solution_scores_near_the_top(name: str, scored: dict) -> None:
    strong = scored[(name, "strong")]
    assert strong.n_errors == 0, strong.error_counts()
    floor = {
        "parity_noise": 0.95,
        "parity_noiseless": 1.0,
        "str_grid_dist": 1.0,
        "modified_quadratic_assignment": 0.35,
        "three_sat": 1.0,
        "maxcut": 0.58,
    }[name]
    assert strong.utility >= floor
    assert strong.utility >= scored[(name, "seed_relaxed")].utility
    assert strong.utility > scored[(name, "trivial")].utility


def test_the_broadcast_hack_scores_zero() -> None:
    """Correct parity predictions shaped (20, 1) scored 1120% in the reference; here 0."""
    task = get_task("parity_noiseless")
    column = STRONG["parity_noiseless"].replace(
        "return (test_samples @ best) % 2", "return ((test_samples @ best) % 2).reshape(-1, 1)"
    )
    (ev,) = evaluate_many([(task, column, "val", [0, 1, 2])])
    assert ev.utility == 0.0
    assert all(o.error_kind == "invalid" and "(20, 1)" in o.reason for o in ev.instances)


def test_evaluation_is_deterministic() -> None:
    """Same solution, split and seed: the same scores (the guest RNG is seeded per job)."""
    task = get_task("parity_noise")
    a, b = evaluate_many([(task, task.seed_solution, "val", None)] * 2)
    assert [o.score for o in a.instances] == [o.score for o in b.instances]
    assert a.utility == b.utility


@pytest.fixture(scope="module")
def adversarial() -> dict[tuple[str, str], Evaluation]:
    specs = {}
    for name in TASK_NAMES:
        task = get_task(name)
        # The honest baseline runs without time pressure, so a slow moment on a busy machine
        # can only lower an adversary's score, never the baseline's.
        relaxed = task.with_options(time_limit_s=RELAXED_S)
        specs[(name, "trivial")] = (relaxed, TRIVIAL[name], "val", ADVERSARY_INDICES)
        for adv, program in adversaries(name, task.time_limit_s).items():
            specs[(name, adv)] = (task, program, "val", ADVERSARY_INDICES)
    keys = list(specs)
    return dict(zip(keys, evaluate_many([specs[k] for k in keys]), strict=True))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_adversaries_never_beat_an_honest_trivial_solution(name: str, adversarial: dict) -> None:
    trivial = adversarial[(name, "trivial")].utility
    for adv in adversaries(name, 1.0):
        ev = adversarial[(name, adv)]
        assert 0.0 <= ev.utility <= trivial, (adv, ev.utility, trivial)
        for o in ev.instances:
            assert o.reason, (adv, o)
            assert 0.0 <= o.score <= 1.0
            if adv not in SIDE_EFFECT_ONLY:
                assert o.error_kind is not None and o.score == 0.0, (adv, o)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_adversary_outcomes_say_why(name: str, adversarial: dict) -> None:
    kinds = {adv: {o.error_kind for o in adversarial[(name, adv)].instances} for adv in adversaries(name, 1.0)}

    def only(adv: str, kind: str) -> bool:  # a descheduled guest may also hit the time limit
        return kind in kinds[adv] and kinds[adv] <= {kind} | TIMING_KINDS

    assert only("raise", "error")
    assert kinds["sleep_past_limit"] <= TIMING_KINDS
    assert kinds["busy_loop"] <= TIMING_KINDS
    assert only("custom_eq", "invalid_output")  # not representable as data
    assert only("custom_eq_object", "invalid_output")
    assert only("object_array", "invalid_output")
    if name != "str_grid_dist":
        assert only("column_broadcast", "invalid")
        assert only("nan", "invalid") and only("inf", "invalid")
    for o in adversarial[(name, "sleep_past_limit")].instances:
        assert "limit" in o.reason or "timeout" in o.reason


def test_candidates_cannot_plant_files_in_the_repository(adversarial: dict) -> None:
    assert not os.path.exists(PLANT_PATH)


def test_side_effect_adversaries_get_exactly_the_trivial_score(adversarial: dict) -> None:
    """Printing fake scores or monkeypatching the guest's numpy/builtins changes nothing."""
    for name in TASK_NAMES:
        trivial = adversarial[(name, "trivial")]
        for adv in ("fake_score_print", "monkeypatch", "write_files"):
            ev = adversarial[(name, adv)]
            for o, base in zip(ev.instances, trivial.instances, strict=True):
                assert o.score == base.score or (o.error_kind is not None and o.score == 0), (adv, o)


def test_guest_gets_writable_copies_of_inputs() -> None:
    """Host instance arrays are read-only; the guest's copies are its own to modify."""
    program = (
        "def algorithm(train_samples, train_parity, test_samples):\n    test_samples[:] = 0\n    return [0] * 20\n"
    )
    task = get_task("parity_noise")
    (ev,) = evaluate_many([(task, program, "val", [0])])
    assert ev.instances[0].error_kind is None
    assert np.any(task.instances("val")[0].args[2] != 0)
