"""Scoring throughput: every task's seed solution on ``test`` in the sandbox, serial vs
parallel, and the whole HumanEval canonical set.

The sandbox overhead share is 1 - (time inside the guest call) / (job wall time), summed over
jobs: the part of each job spent on start-up, isolation, imports and result transfer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import structlog

from bench.harness import Figure
from sandbox import Job, JobResult, SandboxConfig, SandboxPool
from tasks import all_tasks, run_jobs
from tasks.humaneval import check_job, interpret, load_problems

__all__ = ("run",)


async def _timed(workers: int, jobs: Sequence[Job]) -> tuple[float, list[JobResult]]:
    async with SandboxPool(SandboxConfig(workers=workers)) as pool:
        await run_jobs(pool, jobs[: workers * 2])  # warm the workers
        start = time.perf_counter()
        results = await run_jobs(pool, jobs)
        return time.perf_counter() - start, results


def _overhead(results: Sequence[JobResult]) -> float:
    wall = sum(r.wall_time_s for r in results)
    inside = sum(r.call_time_s or 0.0 for r in results)
    return 1.0 - inside / wall if wall > 0 else 0.0


def run() -> list[Figure]:
    figures: list[Figure] = []
    tasks = all_tasks()
    per_task = {t.name: t.jobs(t.seed_solution, "test") for t in tasks}
    every = [j for jobs in per_task.values() for j in jobs]
    with structlog.testing.capture_logs():
        serial = {}
        for task in tasks:
            jobs = per_task[task.name]
            elapsed, results = anyio.run(_timed, 1, jobs)
            serial[task.name] = elapsed
            utility = task.fold("test", results).utility
            figures.append(
                Figure(
                    f"tasks.{task.name}.seed_test_serial",
                    len(jobs) / elapsed,
                    "inst/s",
                    note=f"{len(jobs)} instances in {elapsed:.2f} s, utility {utility:.3f}",
                )
            )
        t_serial, _ = anyio.run(_timed, 1, every)
        t_parallel, results = anyio.run(_timed, 2, every)
        problems = load_problems()
        he_jobs = [check_job(p, p.canonical_program) for p in problems]
        t_he, he_results = anyio.run(_timed, 2, he_jobs)
    passed = sum(interpret(p, r).passed for p, r in zip(problems, he_results, strict=True))
    n = len(every)
    figures += [
        Figure("tasks.all_seeds_test.serial", n / t_serial, "inst/s", note=f"{n} jobs, 1 worker, {t_serial:.2f} s"),
        Figure(
            "tasks.all_seeds_test.parallel",
            n / t_parallel,
            "inst/s",
            ">=",
            20.0,
            note=f"{n} jobs, 2 workers, {t_parallel:.2f} s",
        ),
        Figure(
            "tasks.all_seeds_test.speedup",
            t_serial / t_parallel,
            "x",
            ">=",
            1.2,
            note="2 workers vs 1 on the same jobs",
        ),
        Figure(
            "tasks.all_seeds_test.sandbox_overhead_share",
            _overhead(results),
            "fraction",
            note="1 - sum(call time) / sum(job wall time)",
        ),
        Figure(
            "tasks.humaneval_canonical.time",
            t_he,
            "s",
            "<=",
            60.0,
            note=f"{len(problems)} problems, {passed} passed, 2 workers",
        ),
        Figure("tasks.humaneval_canonical.rate", len(problems) / t_he, "problems/s"),
        Figure("tasks.humaneval_canonical.sandbox_overhead_share", _overhead(he_results), "fraction"),
    ]
    return figures
