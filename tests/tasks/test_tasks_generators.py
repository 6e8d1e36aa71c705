"""Instance generators: deterministic across processes and faithful to the reference draws."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks import all_tasks, get_task, instance_digest
from tasks.modified_quadratic_assignment import cost
from tasks.str_grid_dist import grid_dist
from tasks.three_sat import satisfies

REPO = Path(__file__).resolve().parents[2]
TASK_NAMES = [t.name for t in all_tasks()]


def test_digests_agree_across_processes() -> None:
    """Every split of every task hashes the same in a fresh interpreter."""
    here = {f"{t.name}/{s}": instance_digest(t.instances(s)) for t in all_tasks() for s in t.splits}
    code = (
        "import json\n"
        "from tasks import all_tasks, instance_digest\n"
        "print(json.dumps({f'{t.name}/{s}': instance_digest(t.instances(s))"
        " for t in all_tasks() for s in t.splits}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) == here


@pytest.mark.parametrize("name", TASK_NAMES)
def test_split_sizes_and_seeds(name: str) -> None:
    task = get_task(name)
    for split, base in (("val", 4321), ("test", 5678)):
        instances = task.instances(split)
        assert len(instances) == task.split_sizes[split]
        assert [i.index for i in instances] == list(range(len(instances)))
        assert [i.seed for i in instances] == [base + k for k in range(len(instances))]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_instances_are_read_only(name: str) -> None:
    """Cached instance arrays cannot be mutated by a caller by accident."""
    for arg in get_task(name).instances("val")[0].args:
        if isinstance(arg, np.ndarray):
            with pytest.raises(ValueError):
                arg.flat[0] = 1


def test_generation_leaves_global_rngs_alone() -> None:
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    get_task("maxcut").generate(0, 12345)
    get_task("parity_noise").generate(0, 12345)
    assert (random.random(), np.random.rand()) == expected


def test_parity_draw_order_matches_reference_spec() -> None:
    """Re-derive LPN instances with the global RNGs exactly as TASKS.md states."""
    task = get_task("parity_noise")
    for inst in task.instances("test")[:5]:
        np.random.seed(inst.seed)
        random.seed(inst.seed)
        bits = np.random.binomial(1, 0.3, 10)
        samples = np.random.binomial(1, 0.5, (120, 10))
        parity = np.sum(samples * bits, axis=1) % 2
        flips = np.random.binomial(1, 0.05, 100)
        train_x, train_y, test_x = inst.args
        np.testing.assert_array_equal(train_x, samples[:100])
        np.testing.assert_array_equal(train_y, (parity[:100] + flips) % 2)
        np.testing.assert_array_equal(test_x, samples[100:])
        np.testing.assert_array_equal(inst.hidden["test_parity"], parity[100:])


def test_noiseless_parity_labels_are_exact() -> None:
    for inst in get_task("parity_noiseless").instances("val"):
        train_x, train_y, test_x = inst.args
        bits = inst.hidden["true_bits"]
        np.testing.assert_array_equal(train_y, (train_x @ bits) % 2)
        np.testing.assert_array_equal(inst.hidden["test_parity"], (test_x @ bits) % 2)


def test_str_grid_dist_draw_order_and_answers() -> None:
    for inst in get_task("str_grid_dist").instances("val"):
        random.seed(inst.seed)
        length = random.randint(1, 30)
        t = "".join(random.choice("AB") for _ in range(length))
        s = "".join(random.choice("AB") for _ in range(length))
        assert inst.args == (t, grid_dist(s, t))
        assert inst.hidden["s"] == s


def test_mqa_draw_order_and_normalisation_constants() -> None:
    rng = np.random.RandomState(0)
    for inst in get_task("modified_quadratic_assignment").instances("test"):
        np.random.seed(inst.seed)
        F, D, P = np.random.rand(15, 15), np.random.rand(15, 15), np.random.rand(15, 15)
        for mine, ref in zip(inst.args, (F, D, P), strict=True):
            np.testing.assert_array_equal(mine, ref)
        mean, bound = inst.hidden["expected_random_cost"], inst.hidden["lower_bound"]
        costs = [cost(F, D, P, rng.permutation(15)) for _ in range(2000)]
        assert bound < min(costs)  # the bound holds for every permutation we try
        assert abs(float(np.mean(costs)) - mean) < 0.5  # closed form = sample mean


def test_three_sat_formulas_are_planted_and_well_formed() -> None:
    for inst in get_task("three_sat").instances("val"):
        (formula,) = inst.args
        n = inst.hidden["n"]
        assert 5 <= n <= 50 and len(formula) == 4 * n
        assert all(len(c) == 3 and len({abs(x) for x in c}) == 3 for c in formula)
        assert all(1 <= abs(x) <= n for c in formula for x in c)
        assert satisfies(formula, inst.hidden["planted"])


def test_maxcut_graphs() -> None:
    for inst in get_task("maxcut").instances("val")[:10]:
        (A,) = inst.args
        assert 50 <= len(A) <= 200 and A.dtype == np.float64
        np.testing.assert_array_equal(A, A.T)
        assert np.all(np.diag(A) == 0)
        assert set(np.unique(A)) <= set(range(11))
        assert inst.hidden["total_weight"] == A.sum() / 2
