"""modified_quadratic_assignment — a quadratic assignment problem with a linear preference term.

Objective (a cost, lower is better) of a permutation ``a`` (facility i -> location a[i]):

    cost(a) = sum_ij F[i, j] * D[a[i], a[j]]  -  0.5 * sum_i P[i, a[i]]

Reference bugs fixed: the reference added the run time to the objective and called higher
better, so slower and worse assignments scored more. Here:

**Normalisation.** score = clip((E - cost) / (E - LB), 0, 1), where

- E is the *exact* expected cost of a uniformly random permutation, in closed form:
  E = mean(diag D) * sum_i F[i, i] + mean(offdiag D) * sum_{i != j} F[i, j] - 0.5 * sum(P) / n;
- LB is a cheap valid lower bound on the cost of every permutation: a permutation maps the
  off-diagonal pairs (i, j) bijectively onto off-diagonal pairs, so by the rearrangement
  inequality sum_{i != j} F_ij D_{a_i a_j} >= <sorted offdiag F ascending, sorted offdiag D
  descending>; likewise for the diagonal; and sum_i P[i, a_i] <= sum_i max_k P[i, k].

So a random permutation scores about 0, no permutation can reach a score above 1 (the bound is
loose: good solutions land around 0.4-0.6), and the scale is the same for every instance. Run
time is not part of the score beyond the 0.5 s limit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from tasks import checks
from tasks._types import Instance
from tasks.base import Task
from tasks.visible import VisibleParts

__all__ = ("ModifiedQuadraticAssignment", "cost", "expected_random_cost", "lower_bound")

N = 15
LAMBDA = 0.5

SEED_SOLUTION = '''\
import math
import random

import numpy as np


def algorithm(F, D, P):
    """Simulated annealing over pairwise swaps, minimising the cost."""
    n = len(F)

    def cost(a):
        return float(np.sum(F * D[np.ix_(a, a)]) - 0.5 * np.sum(P[np.arange(n), a]))

    current = list(range(n))
    random.shuffle(current)
    current_cost = cost(current)
    best, best_cost = current[:], current_cost
    temperature = 1.0
    for _ in range(1500):
        i, j = random.sample(range(n), 2)
        candidate = current[:]
        candidate[i], candidate[j] = candidate[j], candidate[i]
        candidate_cost = cost(candidate)
        delta = candidate_cost - current_cost
        if delta < 0 or random.random() < math.exp(-delta / temperature):
            current, current_cost = candidate, candidate_cost
            if current_cost < best_cost:
                best, best_cost = current[:], current_cost
        temperature *= 0.997
    return best
'''

DESCRIPTION = f"""\
Modified quadratic assignment.

Write a Python function `algorithm(F, D, P)` that assigns {N} facilities to {N} locations.
F (flows), D (distances) and P (preferences) are numpy float arrays of shape ({N}, {N}) with
entries uniform in [0, 1). Return a permutation `a` of range({N}) (a list of ints or an integer
numpy array of shape ({N},)); facility i goes to location a[i].

The cost to MINIMISE is
    cost(a) = sum over i, j of F[i, j] * D[a[i], a[j]]  -  {LAMBDA} * sum over i of P[i, a[i]].

Scoring per instance: (E - cost) / (E - LB) clipped to [0, 1], where E is the expected cost of a
uniformly random permutation on that instance and LB a fixed lower bound on the cost of any
permutation; so a random permutation scores about 0 and lower cost always scores more. A call
slower than 0.5 s (wall clock, measured around the call only), an exception, or output that is
not a permutation of range({N}) scores 0. The utility is the mean over 10 instances (val).
`numpy` and the standard library are available; there is no network and no file access.
"""

FloatArray = npt.NDArray[np.float64]

VISIBLE_DEFINITIONS = """\
def cost(F, D, P, a):
    \"\"\"The cost to minimise.\"\"\"
    return float(np.sum(F * D[np.ix_(a, a)]) - LAMBDA * np.sum(P[np.arange(len(a)), a]))


def offdiag(M):
    return M[~np.eye(len(M), dtype=bool)]


def expected_random_cost(F, D, P):
    \"\"\"The exact mean cost over all permutations.\"\"\"
    diag = float(np.trace(F)) * float(np.mean(np.diag(D)))
    off = float(np.sum(offdiag(F))) * float(np.mean(offdiag(D)))
    return diag + off - LAMBDA * float(np.sum(P)) / len(F)


def lower_bound(F, D, P):
    \"\"\"No permutation costs less (rearrangement inequality); not reachable in general.\"\"\"
    off = float(np.dot(np.sort(offdiag(F)), np.sort(offdiag(D))[::-1]))
    diag = float(np.dot(np.sort(np.diag(F)), np.sort(np.diag(D))[::-1]))
    return off + diag - LAMBDA * float(np.sum(np.max(P, axis=1)))


def generate(seed):
    rng = np.random.RandomState(seed)
    F = rng.rand(N, N)  # flows between facilities
    D = rng.rand(N, N)  # distances between locations
    P = rng.rand(N, N)  # preference of facility i for location k
    return (F, D, P), None


def score(inputs, answer, output):
    F, D, P = inputs
    a = np.asarray(output)
    if a.shape != (N,) or sorted(a.tolist()) != list(range(N)):
        return 0.0  # invalid: a permutation of range(N)
    a = a.astype(int)
    mean, bound = expected_random_cost(F, D, P), lower_bound(F, D, P)
    return min(1.0, max(0.0, (mean - cost(F, D, P, a)) / (mean - bound)))
"""


def cost(F: FloatArray, D: FloatArray, P: FloatArray, a: npt.NDArray[np.int64]) -> float:
    """The objective (lower is better)."""
    n = len(a)
    return float(np.sum(F * D[np.ix_(a, a)]) - LAMBDA * np.sum(P[np.arange(n), a]))


def _offdiag(M: FloatArray) -> FloatArray:
    return M[~np.eye(len(M), dtype=bool)]


def expected_random_cost(F: FloatArray, D: FloatArray, P: FloatArray) -> float:
    """Exact mean cost over all n! permutations."""
    n = len(F)
    diag = float(np.trace(F)) * float(np.mean(np.diag(D)))
    off = float(np.sum(_offdiag(F))) * float(np.mean(_offdiag(D)))
    return diag + off - LAMBDA * float(np.sum(P)) / n


def lower_bound(F: FloatArray, D: FloatArray, P: FloatArray) -> float:
    """Rearrangement-inequality bound: no permutation costs less (see module docstring)."""
    off = float(np.dot(np.sort(_offdiag(F)), np.sort(_offdiag(D))[::-1]))
    diag = float(np.dot(np.sort(np.diag(F)), np.sort(np.diag(D))[::-1]))
    return off + diag - LAMBDA * float(np.sum(np.max(P, axis=1)))


class ModifiedQuadraticAssignment(Task):
    name: ClassVar[str] = "modified_quadratic_assignment"
    description: ClassVar[str] = DESCRIPTION
    seed_solution: ClassVar[str] = SEED_SOLUTION
    split_sizes: ClassVar[dict[str, int]] = {"val": 10, "test": 10}
    default_time_limit_s: ClassVar[float] = 0.5
    visible_instances: ClassVar[int] = 5

    def visible_parts(self) -> VisibleParts:
        return VisibleParts(
            title="Modified quadratic assignment",
            signature="algorithm(F, D, P)",
            constants={"N": N, "LAMBDA": LAMBDA},
            definitions=VISIBLE_DEFINITIONS,
            notes=(
                "Lower cost scores more: a uniformly random permutation scores about 0, no permutation "
                "above 1; run time is not part of the score.",
            ),
        )

    def generate(self, index: int, seed: int) -> Instance:
        rng = np.random.RandomState(seed)
        F = rng.rand(N, N)
        D = rng.rand(N, N)
        P = rng.rand(N, N)
        return Instance(
            index=index,
            seed=seed,
            args=(F, D, P),
            hidden={
                "expected_random_cost": expected_random_cost(F, D, P),
                "lower_bound": lower_bound(F, D, P),
            },
        )

    def validate(self, instance: Instance, raw_value: Any) -> tuple[bool, Any, str]:
        return checks.permutation(raw_value, N)

    def score(self, instance: Instance, value: Any) -> float:
        F, D, P = instance.args
        mean, bound = instance.hidden["expected_random_cost"], instance.hidden["lower_bound"]
        return (mean - cost(F, D, P, value)) / (mean - bound)

    def explain(self, instance: Instance, value: Any, score: float) -> str:
        F, D, P = instance.args
        return (
            f"cost {cost(F, D, P, value):.4f} (random mean "
            f"{instance.hidden['expected_random_cost']:.4f}, bound {instance.hidden['lower_bound']:.4f})"
        )
