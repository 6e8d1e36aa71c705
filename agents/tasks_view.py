"""Task lookup for the agents: downstream tasks by name, HumanEval problems as one-job tasks."""

from __future__ import annotations

import copy
import functools
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from events import sha256_hex
from sandbox import Job, JobResult
from tasks import Evaluation, get_task
from tasks.humaneval import Problem, get_problem, interpret

__all__ = ("HUMANEVAL_PREFIX", "Folded", "TaskView", "fold_recorded", "fold_utility", "task_for")

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


@dataclass(frozen=True)
class Folded:
    """A finished batch folded: what its ``utility.evaluated`` records. ``outcomes_blob`` is
    the per-instance evaluation (canonical JSON, ``outcomes`` its hash; None for a check)."""

    utility: float
    detail: dict[str, Any]
    outcomes: str | None
    outcomes_blob: bytes | None
    invalid_outputs: int


#: Folds by (task, split, results blob hash), most recent last. The fold is a pure function of
#: those (``tasks.base``), so a batch whose recorded results were folded once in this process (a
#: replay after the run, or a second evaluator) is not decoded and folded again.
_FOLDS: OrderedDict[tuple[str, str, str], Folded] = OrderedDict()
_FOLDS_KEPT = 2048


async def fold_recorded(
    name: str, split: str, results_digest: str, load: Callable[[], Awaitable[list[JobResult]]]
) -> Folded:
    """The fold of a batch's recorded results (``load`` reads them), once per distinct batch.

    Returns a ``Folded`` whose ``detail`` is the caller's own copy."""
    key = (name, split, results_digest)
    known = _FOLDS.get(key)
    if known is None:
        utility, detail, evaluation = fold_utility(name, split, await load())
        blob: bytes | None = None
        digest: str | None = None
        invalid = 0
        if evaluation is not None:
            blob = json.dumps(evaluation.to_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")
            digest = sha256_hex(blob)
            invalid = sum(1 for o in evaluation.instances if o.error_kind in ("invalid", "invalid_output"))
        known = Folded(float(utility), detail, digest, blob, invalid)
        _FOLDS[key] = known
        while len(_FOLDS) > _FOLDS_KEPT:
            _FOLDS.popitem(last=False)
    else:
        _FOLDS.move_to_end(key)
    return Folded(
        known.utility, copy.deepcopy(known.detail), known.outcomes, known.outcomes_blob, known.invalid_outputs
    )
