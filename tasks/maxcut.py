"""maxcut — weighted maximum cut on dense random graphs.

Reference bug fixed: the reference's score was the unnormalised mean cut weight divided by 10
(about 93 per graph for a random cut). Here an instance scores cut weight / total edge weight,
in [0, 1]; a random cut scores about 0.5 and the optimum of these dense graphs lies a little
above that.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from tasks import checks
from tasks._types import Instance
from tasks.base import Task
from tasks.visible import VisibleParts

__all__ = ("MaxCut", "cut_weight")

MIN_NODES, MAX_NODES = 50, 200
P_EDGE = 0.4
MAX_WEIGHT = 10

SEED_SOLUTION = '''\
import numpy as np


def algorithm(adjacency_matrix):
    """Greedy: place each node, in order, on the side that cuts more weight to placed nodes."""
    n = len(adjacency_matrix)
    side = np.full(n, -1)
    for i in range(n):
        to_zero = adjacency_matrix[i, side == 0].sum()
        to_one = adjacency_matrix[i, side == 1].sum()
        side[i] = 1 if to_zero >= to_one else 0
    return side.tolist()
'''

DESCRIPTION = f"""\
Maximum cut.

Write a Python function `algorithm(adjacency_matrix)` that splits the nodes of a weighted
undirected graph into two sides. adjacency_matrix is a symmetric numpy float array of shape
(n, n), {MIN_NODES} <= n <= {MAX_NODES}, with zero diagonal; each pair of nodes is joined with
probability {P_EDGE} by an edge of integer weight 1..{MAX_WEIGHT}. Return exactly n labels in
{{0, 1}} (a list or a numpy array of shape (n,)).

Scoring per instance: the total weight of edges whose endpoints get different labels, divided by
the total weight of all edges (so in [0, 1]). A call slower than 0.1 s (wall clock, measured
around the call only), an exception, or output of the wrong length or with values other than
0/1 scores 0. The utility is the mean over 100 instances (val). `numpy` and the standard library
are available; there is no network and no file access.
"""


VISIBLE_DEFINITIONS = """\
def generate(seed):
    rng = random.Random(seed)
    n = rng.randint(MIN_NODES, MAX_NODES)
    adjacency = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < P_EDGE:
                adjacency[i, j] = adjacency[j, i] = rng.randint(1, MAX_WEIGHT)
    return (adjacency,), None


def score(inputs, answer, output):
    (adjacency,) = inputs
    labels = np.asarray(output)
    if labels.shape != (len(adjacency),) or not np.isin(labels, (0, 1)).all():
        return 0.0  # invalid: exactly n labels in {0, 1}
    cut = float(np.sum(adjacency[labels[:, None] != labels[None, :]])) / 2.0
    total = float(np.sum(adjacency)) / 2.0
    return cut / total if total > 0 else 0.0
"""


def cut_weight(adjacency: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]) -> float:
    differ = labels[:, None] != labels[None, :]
    return float(np.sum(adjacency[differ])) / 2.0


class MaxCut(Task):
    name: ClassVar[str] = "maxcut"
    description: ClassVar[str] = DESCRIPTION
    seed_solution: ClassVar[str] = SEED_SOLUTION
    split_sizes: ClassVar[dict[str, int]] = {"val": 100, "test": 100}
    default_time_limit_s: ClassVar[float] = 0.1
    visible_instances: ClassVar[int] = 3

    def visible_parts(self) -> VisibleParts:
        return VisibleParts(
            title="Maximum cut",
            signature="algorithm(adjacency_matrix)",
            constants={"MIN_NODES": MIN_NODES, "MAX_NODES": MAX_NODES, "P_EDGE": P_EDGE, "MAX_WEIGHT": MAX_WEIGHT},
            definitions=VISIBLE_DEFINITIONS,
        )

    def generate(self, index: int, seed: int) -> Instance:
        # Only `random` is drawn from; the matrix is float64 as in the reference.
        rng = random.Random(seed)
        n = rng.randint(MIN_NODES, MAX_NODES)
        adjacency = np.zeros((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                if rng.random() < P_EDGE:
                    w = rng.randint(1, MAX_WEIGHT)
                    adjacency[i, j] = adjacency[j, i] = w
        total = float(np.sum(adjacency)) / 2.0
        return Instance(index=index, seed=seed, args=(adjacency,), hidden={"total_weight": total})

    def validate(self, instance: Instance, raw_value: Any) -> tuple[bool, Any, str]:
        return checks.binary_vector(raw_value, len(instance.args[0]))

    def score(self, instance: Instance, value: Any) -> float:
        total = instance.hidden["total_weight"]
        return cut_weight(instance.args[0], value) / total if total > 0 else 0.0

    def explain(self, instance: Instance, value: Any, score: float) -> str:
        total = instance.hidden["total_weight"]
        return f"cut weight {cut_weight(instance.args[0], value):g} of {total:g}"
