"""The visible utility: the short program an improver is shown as ``utility.str``.

In the STOP reference the model never sees the scorer that counts; it sees a simplified utility
program (how instances are drawn, how an output is scored, the time limit) and is conditioned on
it. Ours is written here, one per task, and is assembled from the task's own constants (sizes,
probabilities, time limit, number of val instances), so the text cannot drift from the scorer:
a test runs each text's ``generate`` on the val seeds and checks it reproduces the task's val
instances exactly, and its ``score`` gives the host scorer's value on the same outputs.

Unlike the reference's texts, ours state the limits the host enforces, score cost-minimising
tasks the right way round, and put no run time into any score.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ("VisibleParts", "render")


@dataclass(frozen=True)
class VisibleParts:
    """A task's part of its visible program.

    ``definitions`` must define ``generate(seed) -> (inputs, answer)`` (``inputs`` are the
    arguments of ``algorithm``; ``answer`` what ``score`` needs beyond them) and
    ``score(inputs, answer, output) -> float`` (in [0, 1]; invalid output scores 0), using the
    names in ``constants``.
    """

    title: str
    signature: str
    constants: Mapping[str, Any]
    definitions: str
    imports: tuple[str, ...] = ("random", "time")
    numpy: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)


_WIDTH = 92

_UTILITY = '''\
def load_algorithm(algorithm_str):
    """The `algorithm` function the program text defines."""
    namespace = {}
    exec(algorithm_str, namespace)
    return namespace["algorithm"]


def utility(algorithm_str: str, seed: int | None = None) -> float:
    """Mean score of the program over N_INSTANCES instances drawn from a random seed."""
    algorithm = load_algorithm(algorithm_str)
    if seed is None:
        seed = random.randrange(2**31)
    scores = []
    for i in range(N_INSTANCES):
        inputs, answer = generate(seed + i)
        start = time.perf_counter()
        try:
            output = algorithm(*inputs)
        except Exception:
            scores.append(0.0)  # an exception scores 0 on that instance
            continue
        if time.perf_counter() - start > TIME_LIMIT_S:
            scores.append(0.0)  # too slow scores 0 on that instance
            continue
        scores.append(score(inputs, answer, output))
    return sum(scores) / len(scores)
'''


def render(
    parts: VisibleParts,
    *,
    tests: int,
    time_limit_s: float,
    val_instances: int,
    fail_zeroes: bool = False,
) -> str:
    """The whole visible program text of a task."""
    plural = "instance" if tests == 1 else "instances"
    paragraphs = [
        f"How `{parts.signature}` is scored. "
        f"utility(algorithm_str) below draws {tests} {plural} from a random seed and returns the mean "
        f"score. The utility you can call scores the same way on {val_instances} instances drawn by this "
        "`generate` from fixed seeds, running the program in a sandbox (no network, no files; numpy and "
        "the standard library are available; random generators are seeded before each call).",
        f"Each call must return within TIME_LIMIT_S = {time_limit_s:g} s (wall clock, timed around the call "
        "only); a slower call, an exception or invalid output scores 0 on that instance.",
        *parts.notes,
    ]
    if fail_zeroes:
        paragraphs.append("With this task's fail_zeroes option, one failed instance zeroes the whole utility.")
    doc = [f'"""{parts.title}.']
    for paragraph in paragraphs:
        doc += ["", textwrap.fill(paragraph, width=_WIDTH)]
    doc.append('"""')
    imports = [f"import {name}" for name in sorted(parts.imports)]
    if parts.numpy:
        imports += ["", "import numpy as np"]
    constants = {**parts.constants, "N_INSTANCES": tests, "TIME_LIMIT_S": float(time_limit_s)}
    consts = [f"{name} = {_literal(value)}" for name, value in constants.items()]
    body = [
        "\n".join(doc),
        "\n".join(imports),
        "\n".join(consts),
        parts.definitions.strip("\n"),
        _UTILITY.strip("\n"),
    ]
    return "\n\n".join(body[:3]) + "\n\n\n" + "\n\n\n".join(body[3:]) + "\n"


def _literal(value: Any) -> str:
    """A Python literal of a constant, strings in double quotes (as the rest of the text)."""
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)
