"""Task lookup for the agents: downstream tasks by name, HumanEval problems as one-job tasks."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Protocol

from sandbox import Job, JobResult
from tasks import Evaluation, get_task
from tasks.humaneval import Problem, get_problem, interpret

__all__ = ("HUMANEVAL_PREFIX", "TaskView", "fold_utility", "task_for")

HUMANEVAL_PREFIX = "humaneval/"


class TaskView(Protocol):
    def jobs(self, solution_text: str, split: str, *, seed: int = 0) -> list[Job]: ...


class HumanEvalCheck:
    """A HumanEval problem as a task of one job: utility 1.0 when ``check`` passes."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.name = HUMANEVAL_PREFIX + problem.task_id

    def jobs(self, solution_text: str, split: str, *, seed: int = 0) -> list[Job]:
        return [self.problem.check_job(solution_text, seed=seed)]

    def fold_detail(self, results: Sequence[JobResult]) -> tuple[float, dict[str, Any]]:
        check = interpret(self.problem, results[0])
        return (1.0 if check.passed else 0.0), check.to_dict()


@functools.cache
def task_for(name: str) -> Any:
    """The task of that name. Memoised process-wide, which is safe: a task is a fixed definition
    (code and seeded instances, the same in every run and store), never run state."""
    if name.startswith(HUMANEVAL_PREFIX):
        return HumanEvalCheck(get_problem(name[len(HUMANEVAL_PREFIX) :]))
    return get_task(name)


def fold_utility(
    name: str, split: str, results: Sequence[JobResult]
) -> tuple[float, dict[str, Any], Evaluation | None]:
    """(utility, detail, per-instance evaluation) for a finished batch."""
    task = task_for(name)
    if isinstance(task, HumanEvalCheck):
        utility, detail = task.fold_detail(results)
        return utility, detail, None
    evaluation: Evaluation = task.fold(split, list(results))
    detail = {
        "errors": evaluation.error_counts(),
        "instances": len(evaluation.instances),
    }
    return evaluation.utility, detail, evaluation
