"""The visible utility programs (``utility.str``): assembled from each task's own constants, and
checked against the task's generator and scorer so they cannot drift.

The texts are ours (trusted test code), so they are executed in-process here; the seed
solutions are ours too. Candidates written by a model never run outside the sandbox.
"""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import pytest
from tasks_sandbox_helpers import evaluate_many

from tasks import SPLIT_SEEDS, Instance, MetaTask, MetaUtilityConfig, Task, all_tasks, get_task
from tasks.meta import ImproverBudget

TASKS = all_tasks()
NAMES = [t.name for t in TASKS]


def visible(task: Task, **overrides: Any) -> dict[str, Any]:
    """The task's visible program, executed (our own text), with module constants overridden."""
    namespace: dict[str, Any] = {}
    exec(compile(task.utility_text, f"<visible {task.name}>", "exec"), namespace)
    namespace.update(overrides)
    return namespace


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def host_score(task: Task, instance: Instance, output: Any) -> float:
    ok, value, _ = task.validate(instance, output)
    return min(1.0, max(0.0, task.score(instance, value))) if ok else 0.0


def _binary(n: int, rng: random.Random) -> list[Any]:
    return [
        [0] * n,
        [rng.randint(0, 1) for _ in range(n)],
        np.array([rng.random() < 0.5 for _ in range(n)]),
        [float(rng.randint(0, 1)) for _ in range(n)],
        [0] * (n - 1),
        [1] * (n + 1),
        [2] * n,
        [0.5] * n,
        [float("nan")] * n,
        np.zeros((n, 1), dtype=int),
        "0" * n,
    ]


def outputs(task: Task, inst: Instance, rng: random.Random) -> list[Any]:
    """Strong, weak, random and invalid outputs for one instance."""
    generic: list[Any] = [None, 5, "x", [], {"a": 1}]
    if task.name.startswith("parity"):
        truth = inst.hidden["test_parity"]
        return [truth, 1 - truth, truth.tolist(), *_binary(len(truth), rng), *generic]
    if task.name == "str_grid_dist":
        t = inst.args[0]
        n = len(t)
        noisy = "".join(rng.choice("AB") for _ in range(n))
        return [inst.hidden["s"], t, noisy, "A" * n, "C" * n, t + "A", t[:-1], list(t), *generic]
    if task.name == "maxcut":
        return _binary(len(inst.args[0]), rng) + generic
    if task.name == "three_sat":
        n = inst.hidden["n"]
        return [inst.hidden["planted"], *_binary(n + 1, rng), *generic]
    assert task.name == "modified_quadratic_assignment"
    perm = list(range(15))
    rng.shuffle(perm)
    return [
        perm,
        list(range(15)),
        list(range(15))[::-1],
        np.array(perm),
        np.array(perm, dtype=float),
        [0] * 15,
        list(range(16)),
        [p + 0.5 for p in perm],
        *generic,
    ]


@pytest.mark.parametrize("name", NAMES)
def test_visible_generate_reproduces_the_val_instances(name: str) -> None:
    task = get_task(name)
    ns = visible(task)
    for inst in task.instances("val"):
        inputs, _ = ns["generate"](SPLIT_SEEDS["val"] + inst.index)
        assert same(tuple(inputs), tuple(inst.args)), (name, inst.index)


@pytest.mark.parametrize("name", NAMES)
def test_visible_score_equals_the_host_scorer(name: str) -> None:
    """Every output (strong, random, invalid) scores the same by the text as on the host."""
    task = get_task(name)
    ns = visible(task)
    rng = random.Random(7)
    checked = 0
    for inst in task.instances("val"):
        inputs, answer = ns["generate"](SPLIT_SEEDS["val"] + inst.index)
        for out in outputs(task, inst, rng):
            got = ns["score"](inputs, answer, out)
            assert got == pytest.approx(host_score(task, inst, out), abs=1e-12), (name, inst.index, out)
            checked += 1
    assert checked >= 10 * len(task.instances("val"))


@pytest.mark.parametrize("name", NAMES)
def test_visible_text_states_the_tasks_numbers(name: str) -> None:
    task = get_task(name)
    text = task.utility_text
    ns = visible(task)
    assert ns["TIME_LIMIT_S"] == task.time_limit_s and ns["N_INSTANCES"] == task.visible_instances
    words = " ".join(text.split())
    assert f"TIME_LIMIT_S = {task.time_limit_s:g} s" in words
    assert f"on {task.split_sizes['val']} instances" in words
    for leak in ("5678", "4321", "secret_utility", "hidden["):
        assert leak not in text
    relaxed = task.with_options(time_limit_s=7.5)
    assert "TIME_LIMIT_S = 7.5" in relaxed.utility_text


def test_visible_text_follows_the_task_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated from the task's code: change a constant there and the text changes with it."""
    import tasks.str_grid_dist as module

    monkeypatch.setattr(module, "MAX_LEN", 7)
    task = get_task("str_grid_dist")
    assert "MAX_LEN = 7" in task.utility_text
    assert max(len(visible(task)["generate"](s)[0][0]) for s in range(200)) == 7


def test_visible_utility_of_the_seeds_scores_like_the_sandboxed_val_utility() -> None:
    """Run as shown (in-process, limits relaxed on both sides so load cannot decide) against the
    same first val instances in the sandbox: equal for deterministic seeds, same scale else."""
    relaxed = [t.with_options(time_limit_s=30.0) for t in TASKS]
    evals = evaluate_many([(t, t.seed_solution, "val", list(range(t.visible_instances))) for t in relaxed])
    for task, ev in zip(relaxed, evals, strict=True):
        ns = visible(task)
        random.seed(0)
        np.random.seed(0)
        shown = ns["utility"](task.seed_solution, seed=SPLIT_SEEDS["val"])
        assert 0.0 <= shown <= 1.0
        if task.name in ("str_grid_dist", "maxcut"):  # deterministic seed solutions
            assert shown == pytest.approx(ev.utility, abs=1e-12), task.name
        else:
            assert shown == pytest.approx(ev.utility, abs=0.35), task.name
            assert (shown > 0) == (ev.utility > 0), task.name


def test_visible_utility_enforces_its_time_limit_and_catches_errors() -> None:
    task = get_task("str_grid_dist")
    ns = visible(task, N_INSTANCES=2)
    slow = f"import time\n\ndef algorithm(t, dist):\n    time.sleep({task.time_limit_s * 1.5})\n    return t\n"
    assert ns["utility"](slow) == 0.0
    assert ns["utility"]("def algorithm(t, dist):\n    raise ValueError\n") == 0.0
    start = time.perf_counter()
    fast = ns["utility"](task.seed_solution)
    assert fast > 0.0 and time.perf_counter() - start < 5


def test_meta_text_states_the_runs_real_budgets() -> None:
    cfg = MetaUtilityConfig(
        tasks=("maxcut", "three_sat"),
        runs=3,
        meta_utility_budget=9,
        improver=ImproverBudget(responses_per_call=2, lm_calls=5, utility_calls=11),
    )
    text = MetaTask(cfg).utility_text
    for line in (
        'DOWNSTREAM_TASKS = ["maxcut", "three_sat"]',
        "RUNS = 3",
        "UTILITY_BUDGET = 11",
        "LM_CALL_BUDGET = 5",
        "MAX_RESPONSES_PER_CALL = 2",
        "META_UTILITY_BUDGET = 9",
    ):
        assert f"\n{line}\n" in text, line
    compile(text, "<meta>", "exec")  # a program text (never run: the host objects it names are not real)
    default = MetaTask().utility_text
    assert "RUNS = 5" in default and "UTILITY_BUDGET = 25" in default and "LM_CALL_BUDGET = 4" in default
