"""three_sat — planted random 3-SAT.

Only ``random`` is seeded (the reference does not seed numpy here). The planted assignment stays
on the host and is never needed for scoring: any satisfying assignment counts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from tasks import checks
from tasks._types import Instance
from tasks.base import Task
from tasks.visible import VisibleParts

__all__ = ("ThreeSat", "generate_formula", "satisfies")

MIN_N, MAX_N = 5, 50
CLAUSE_RATIO = 4

SEED_SOLUTION = '''\
import random


def algorithm(formula):
    """WalkSAT-style random walk: flip a variable of an unsatisfied clause."""
    n = max(abs(lit) for clause in formula for lit in clause)
    assignment = [False] + [random.random() < 0.5 for _ in range(n)]

    def satisfied(clause):
        return any(assignment[abs(lit)] == (lit > 0) for lit in clause)

    for _ in range(1000):
        unsatisfied = [clause for clause in formula if not satisfied(clause)]
        if not unsatisfied:
            break
        clause = random.choice(unsatisfied)
        if random.random() < 0.4:
            var = abs(random.choice(clause))
        else:
            def broken_after_flip(v):
                assignment[v] = not assignment[v]
                count = sum(1 for c in formula if not satisfied(c))
                assignment[v] = not assignment[v]
                return count
            var = min((abs(lit) for lit in clause), key=broken_after_flip)
        assignment[var] = not assignment[var]
    return assignment
'''

DESCRIPTION = f"""\
Random 3-SAT (satisfiable instances).

Write a Python function `algorithm(formula)`. The formula is a list of clauses; each clause is a
list of 3 non-zero ints (literals) over distinct variables 1..n: literal v means "variable v is
True", -v means "variable v is False". A clause is satisfied if any of its literals is. n is
between {MIN_N} and {MAX_N}, there are {CLAUSE_RATIO}n clauses, and every formula is satisfiable.

Return an assignment as a list (or 1-D numpy array) of exactly n + 1 booleans (or 0/1 ints)
indexed by variable; index 0 is unused (put False there).

Scoring: the utility is the fraction of formulas satisfied over 30 instances (val). A call
slower than 0.1 s (wall clock, measured around the call only), an exception, a wrong-length or
non-boolean assignment, or one that leaves a clause unsatisfied scores 0 on that instance.
`numpy` and the standard library are available; there is no network and no file access.
"""


VISIBLE_DEFINITIONS = """\
def generate(seed):
    # A random formula with a planted solution: only clauses the plant satisfies are kept.
    rng = random.Random(seed)
    n = rng.randint(MIN_N, MAX_N)
    m = CLAUSE_RATIO * n
    planted = [False] + [rng.random() < 0.5 for _ in range(n)]
    formula = []
    for _ in range(m * m):
        variables = rng.sample(range(1, n + 1), 3)
        clause = [v if rng.random() < 0.5 else -v for v in variables]
        if any(planted[abs(lit)] == (lit > 0) for lit in clause):
            formula.append(clause)
        if len(formula) == m:
            break
    rng.shuffle(formula)
    return (formula,), n


def score(inputs, n, output):
    (formula,) = inputs
    assignment = np.asarray(output)
    if assignment.shape != (n + 1,) or not np.isin(assignment, (0, 1)).all():
        return 0.0  # invalid: n + 1 booleans (or 0/1), indexed by variable
    satisfied = all(any(bool(assignment[abs(lit)]) == (lit > 0) for lit in clause) for clause in formula)
    return 1.0 if satisfied else 0.0
"""


def generate_formula(rng: random.Random, n: int, m: int) -> tuple[list[list[int]], list[bool]]:
    """The reference's planted generator: draw clauses, keep those the plant satisfies."""
    planted = [False] + [rng.random() < 0.5 for _ in range(n)]
    formula: list[list[int]] = []
    for _ in range(m * m):
        variables = rng.sample(range(1, n + 1), 3)
        clause = [v if rng.random() < 0.5 else -v for v in variables]
        if any(planted[abs(lit)] == (lit > 0) for lit in clause):
            formula.append(clause)
        if len(formula) == m:
            break
    rng.shuffle(formula)
    return formula, planted


def satisfies(formula: Sequence[Sequence[int]], assignment: Sequence[int] | np.ndarray) -> bool:
    return all(any(bool(assignment[abs(lit)]) == (lit > 0) for lit in clause) for clause in formula)


class ThreeSat(Task):
    name: ClassVar[str] = "three_sat"
    description: ClassVar[str] = DESCRIPTION
    seed_solution: ClassVar[str] = SEED_SOLUTION
    split_sizes: ClassVar[dict[str, int]] = {"val": 30, "test": 30}
    default_time_limit_s: ClassVar[float] = 0.1
    visible_instances: ClassVar[int] = 10

    def visible_parts(self) -> VisibleParts:
        return VisibleParts(
            title="Random 3-SAT (satisfiable)",
            signature="algorithm(formula)",
            constants={"MIN_N": MIN_N, "MAX_N": MAX_N, "CLAUSE_RATIO": CLAUSE_RATIO},
            definitions=VISIBLE_DEFINITIONS,
        )

    def generate(self, index: int, seed: int) -> Instance:
        rng = random.Random(seed)
        n = rng.randint(MIN_N, MAX_N)
        formula, planted = generate_formula(rng, n, CLAUSE_RATIO * n)
        return Instance(index=index, seed=seed, args=(formula,), hidden={"n": n, "planted": planted})

    def validate(self, instance: Instance, raw_value: Any) -> tuple[bool, Any, str]:
        return checks.binary_vector(raw_value, instance.hidden["n"] + 1)

    def score(self, instance: Instance, value: Any) -> float:
        return 1.0 if satisfies(instance.args[0], value) else 0.0

    def explain(self, instance: Instance, value: Any, score: float) -> str:
        if score == 1.0:
            return "all clauses satisfied"
        formula = instance.args[0]
        broken = sum(1 for c in formula if not any(bool(value[abs(x)]) == (x > 0) for x in c))
        return f"{broken} of {len(formula)} clauses unsatisfied"
