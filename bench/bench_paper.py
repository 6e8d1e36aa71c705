"""Evaluation at the reference's cost: each task's seed, in-process (trusted code, bench only)
vs the same instances as one sandboxed batch, measured in the same run.

The in-process side is what the STOP reference pays without a sandbox: the seed program is
exec'd once in this process and called on every instance, then validated and scored. The
sandboxed side is ``SandboxPool.run_batch`` on a warm one-worker pool plus the same fold: one
guest process loads the program and runs the instances in order, each under its own limit.
Targets: sandboxed <= 2x in-process when in-process takes >= 50 ms, else <= 25 ms overhead.

Not in the default ``make bench`` (``make bench-paper``).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import anyio
import structlog

from bench.harness import Figure
from sandbox import JobResult, SandboxConfig, SandboxPool
from tasks import Task, all_tasks

__all__ = ("run",)

SPLIT = "test"
REPEAT = 3


def _in_process(task: Task) -> tuple[float, float]:
    """(seconds, utility) of the reference-style loop: exec once, call, validate, score."""
    instances = task.instances(SPLIT)
    start = time.perf_counter()
    namespace: dict[str, Any] = {}
    exec(compile(task.seed_solution, "<seed>", "exec"), namespace)  # trusted seed, bench only
    fn = namespace[task.function_name]
    scores = []
    for inst in instances:
        t0 = time.perf_counter()
        raw = fn(*[a.copy() if hasattr(a, "copy") else a for a in inst.args])
        took = time.perf_counter() - t0
        ok, value, _ = task.validate(inst, _roundtrip(raw))
        scores.append(float(task.score(inst, value)) if ok and took <= task.time_limit_s else 0.0)
    elapsed = time.perf_counter() - start
    return elapsed, math.fsum(scores) / len(scores)


def _roundtrip(raw: Any) -> Any:
    tolist = getattr(raw, "tolist", None)
    return tolist() if callable(tolist) else raw


async def _sandboxed(tasks: list[Task]) -> dict[str, tuple[float, float, list[JobResult]]]:
    out: dict[str, tuple[float, float, list[JobResult]]] = {}
    async with SandboxPool(SandboxConfig(workers=1)) as pool:
        for task in tasks:
            jobs = task.jobs(task.seed_solution, SPLIT)
            await pool.run_batch(jobs[:2])  # warm the worker for this program's imports
            times = []
            utility = 0.0
            results: list[JobResult] = []
            for _ in range(REPEAT):
                start = time.perf_counter()
                results = await pool.run_batch(jobs)
                utility = task.fold(SPLIT, results).utility
                times.append(time.perf_counter() - start)
            out[task.name] = (statistics.median(times), utility, results)
    return out


def run() -> list[Figure]:
    figures: list[Figure] = []
    tasks = all_tasks()
    with structlog.testing.capture_logs():
        sandboxed = anyio.run(_sandboxed, tasks)
    for task in tasks:
        local = statistics.median(_in_process(task)[0] for _ in range(REPEAT))
        _, local_utility = _in_process(task)
        boxed, utility, results = sandboxed[task.name]
        n = len(results)
        note = (
            f"{n} instances: in-process {local * 1000:.1f} ms (u={local_utility:.3f}), "
            f"sandboxed batch {boxed * 1000:.1f} ms (u={utility:.3f})"
        )
        figures.append(Figure(f"paper.{task.name}.batch_vs_in_process", boxed / local, "x", note=note))
        if local >= 0.05:
            figures.append(Figure(f"paper.{task.name}.batch_ratio", boxed / local, "x", "<=", 2.0, note=note))
        else:
            overhead_ms = (boxed - local) * 1000
            figures.append(Figure(f"paper.{task.name}.batch_overhead", overhead_ms, "ms", "<=", 25.0, note=note))
    return figures
