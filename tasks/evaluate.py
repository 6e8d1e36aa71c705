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


async def run_jobs(pool: JobRunner, jobs: Sequence[Job]) -> list[JobResult]:
    """Run all jobs concurrently (the pool limits the slots); results in job order."""
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
