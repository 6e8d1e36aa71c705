"""str_grid_dist — find a string at a given "grid distance" from another.

grid_dist(s, t) for equal-length strings over {A, B} is the Hamming distance plus the number of
adjacent changes in s plus the number in t. The seed solution ``return t`` scores 0.439 on
``test``, the figure the STOP paper reports (u(s) = 43.9%).
"""

from __future__ import annotations

import itertools
import random
from typing import Any, ClassVar

from tasks import checks
from tasks._types import Instance
from tasks.base import Task
from tasks.visible import VisibleParts

__all__ = ("StrGridDist", "grid_dist")

ALPHABET = "AB"
MAX_LEN = 30

SEED_SOLUTION = """\
def algorithm(t: str, dist: int) -> str:
    return t
"""

DESCRIPTION = f"""\
String grid distance.

For two strings s and t of equal length over the alphabet {{A, B}}:
    grid_dist(s, t) = (number of positions i with s[i] != t[i])
                    + (number of i with s[i] != s[i+1])
                    + (number of i with t[i] != t[i+1]).

Write a Python function `algorithm(t: str, dist: int) -> str` that returns a string s over
{{A, B}} with len(s) == len(t) and grid_dist(s, t) == dist. Instances have 1 <= len(t) <= {MAX_LEN}
and are generated so that such an s always exists.

Scoring per instance: 1 if grid_dist(s, t) == dist exactly; otherwise
max(0, 0.5 - |grid_dist(s, t) - dist| / (6 * len(t))). A call slower than 0.1 s (wall clock,
measured around the call only), an exception, or output that is not a str of the right length
over {{A, B}} scores 0. The utility is the mean over 50 instances (val). Only the standard
library is needed; there is no network and no file access.
"""


VISIBLE_DEFINITIONS = """\
def grid_dist(s, t):
    hamming = sum(a != b for a, b in zip(s, t))
    changes_s = sum(s[i] != s[i + 1] for i in range(len(s) - 1))
    changes_t = sum(t[i] != t[i + 1] for i in range(len(t) - 1))
    return hamming + changes_s + changes_t


def generate(seed):
    rng = random.Random(seed)
    length = rng.randint(1, MAX_LEN)
    t = "".join(rng.choice(ALPHABET) for _ in range(length))
    s = "".join(rng.choice(ALPHABET) for _ in range(length))
    return (t, grid_dist(s, t)), None


def score(inputs, answer, output):
    t, dist = inputs
    if type(output) is not str or len(output) != len(t) or set(output) - set(ALPHABET):
        return 0.0  # invalid: a str of len(t) over ALPHABET
    d = grid_dist(output, t)
    if d == dist:
        return 1.0
    return max(0.0, 0.5 - abs(d - dist) / (6 * len(t)))
"""


def grid_dist(s: str, t: str) -> int:
    """Hamming(s, t) + adjacent changes within s + adjacent changes within t."""
    if len(s) != len(t):
        raise ValueError("grid_dist needs strings of equal length")
    hamming = sum(a != b for a, b in zip(s, t, strict=True))
    return hamming + sum(a != b for a, b in itertools.pairwise(s)) + sum(a != b for a, b in itertools.pairwise(t))


class StrGridDist(Task):
    name: ClassVar[str] = "str_grid_dist"
    description: ClassVar[str] = DESCRIPTION
    seed_solution: ClassVar[str] = SEED_SOLUTION
    split_sizes: ClassVar[dict[str, int]] = {"val": 50, "test": 50}
    default_time_limit_s: ClassVar[float] = 0.1
    visible_instances: ClassVar[int] = 10

    def visible_parts(self) -> VisibleParts:
        return VisibleParts(
            title="String grid distance",
            signature="algorithm(t: str, dist: int) -> str",
            constants={"ALPHABET": ALPHABET, "MAX_LEN": MAX_LEN},
            definitions=VISIBLE_DEFINITIONS,
            numpy=False,
        )

    def generate(self, index: int, seed: int) -> Instance:
        # Only `random` is drawn from (the reference also seeds numpy but never uses it here).
        rng = random.Random(seed)
        length = rng.randint(1, MAX_LEN)
        t = "".join(rng.choice(ALPHABET) for _ in range(length))
        s = "".join(rng.choice(ALPHABET) for _ in range(length))
        return Instance(index=index, seed=seed, args=(t, grid_dist(s, t)), hidden={"s": s})

    def validate(self, instance: Instance, raw_value: Any) -> tuple[bool, Any, str]:
        t = instance.args[0]
        return checks.ascii_string(raw_value, len(t), ALPHABET)

    def score(self, instance: Instance, value: Any) -> float:
        t, dist = instance.args
        d = grid_dist(value, t)
        if d == dist:
            return 1.0
        return max(0.0, 0.5 - abs(d - dist) / (6 * len(t)))

    def explain(self, instance: Instance, value: Any, score: float) -> str:
        t, dist = instance.args
        d = grid_dist(value, t)
        return "exact distance" if d == dist else f"distance {d}, wanted {dist}"
