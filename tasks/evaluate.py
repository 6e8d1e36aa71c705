"""Run a task's jobs in a sandbox pool and fold the results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import anyio
import structlog

from tasks._types import Evaluation
from tasks.base import Task

if TYPE_CHECKING:
    from sandbox import Job, JobResult

__all__ = ("JobRunner", "evaluate", "run_jobs")

log = structlog.get_logger(__name__)


class JobRunner(Protocol):
    """Anything that runs one sandbox job: a ``SandboxPool`` or the agents' event-log facade."""

    async def run(self, job: Job) -> JobResult: ...


class BatchRunner(JobRunner, Protocol):
    """A runner that can also run one program's instances in one sandboxed process."""

    async def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]: ...


def _batchable(jobs: Sequence[Job]) -> bool:
    first = jobs[0]
    return first.function is not None and all(j.program == first.program and j.function == first.function for j in jobs)


def _chunks(n: int, parts: int) -> list[range]:
    """``parts`` contiguous, nearly equal ranges covering 0..n-1 (deterministic)."""
    parts = max(1, min(parts, n))
    size, extra = divmod(n, parts)
    out, lo = [], 0
    for k in range(parts):
        hi = lo + size + (1 if k < extra else 0)
        out.append(range(lo, hi))
        lo = hi
    return out


async def run_jobs(pool: JobRunner, jobs: Sequence[Job], *, parts: int | None = None) -> list[JobResult]:
    """Run all jobs; results in job order.

    When every job runs the same program's function and the pool supports it, the jobs are
    run as batches (one sandboxed process each, ``SandboxPool.run_batch``): ``parts``
    contiguous batches, by default one per warm worker, so a lone evaluation still uses every
    core. Otherwise each job is its own sandbox job, concurrently (the pool limits the slots).
    """
    if not jobs:
        return []
    run_batch = getattr(pool, "run_batch", None)
    if run_batch is not None and _batchable(jobs):
        if parts is None:
            config = getattr(pool, "config", None)
            parts = int(getattr(config, "worker_count", 1))
        ranges = _chunks(len(jobs), parts)
        batched: list[list[JobResult]] = [[] for _ in ranges]

        async def chunk(k: int, r: range) -> None:
            batched[k] = await run_batch([jobs[i] for i in r])

        async with anyio.create_task_group() as tg:
            for k, r in enumerate(ranges):
                tg.start_soon(chunk, k, r)
        out_b = [res for part in batched for res in part]
        assert len(out_b) == len(jobs)
        return out_b
    results: list[JobResult | None] = [None] * len(jobs)

    async def one(i: int, job: Job) -> None:
        results[i] = await pool.run(job)

    async with anyio.create_task_group() as tg:
        for i, job in enumerate(jobs):
            tg.start_soon(one, i, job)
    out = [r for r in results if r is not None]
    assert len(out) == len(jobs)
    return out


async def evaluate(
    task: Task,
    solution_text: str,
    split: str,
    pool: JobRunner,
    *,
    seed: int = 0,
    indices: Sequence[int] | None = None,
) -> Evaluation:
    """The utility of ``solution_text`` on ``split``, with per-instance outcomes."""
    jobs = task.jobs(solution_text, split, seed=seed, indices=indices)
    results = await run_jobs(pool, jobs)
    evaluation = task.fold(split, results, indices=indices)
    log.debug(
        "tasks.evaluated",
        task=task.name,
        split=split,
        utility=evaluation.utility,
        errors=evaluation.error_counts(),
    )
    return evaluation
