"""The benchmark line format every area shares.

Each ``bench/bench_<name>.py`` module exposes ``run() -> list[Figure]``. Figures are measured in
the same process run, so ratios compare like with like on a shared, noisy machine. Timings use
``time.perf_counter`` medians over repeats (``measure``); ratios are what the targets are set on.
"""

from __future__ import annotations

import operator
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ("Figure", "format_line", "measure")

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Figure:
    """One measured figure and the target it is held to (``op`` of ``None`` means no target)."""

    name: str
    value: float
    unit: str
    op: str | None = None
    target: float | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.op is None or self.target is None:
            return None
        return _OPS[self.op](self.value, self.target)


def format_line(fig: Figure) -> str:
    """``BENCH <name> <value> <unit> target <op> <value>`` (``target none`` without a target)."""
    target = f"target {fig.op} {fig.target:g}" if fig.op is not None else "target none"
    return f"BENCH {fig.name} {fig.value:.4g} {fig.unit} {target}"


def measure(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)
