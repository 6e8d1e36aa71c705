"""The registry of downstream tasks, by name."""

from __future__ import annotations

from outcome import UsageError
from tasks.base import Task, TaskOptions
from tasks.maxcut import MaxCut
from tasks.modified_quadratic_assignment import ModifiedQuadraticAssignment
from tasks.parity_noise import ParityNoise
from tasks.parity_noiseless import ParityNoiseless
from tasks.str_grid_dist import StrGridDist
from tasks.three_sat import ThreeSat

__all__ = ("TASKS", "UnknownTaskError", "all_tasks", "get_task", "task_names")

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        ParityNoise,
        ParityNoiseless,
        StrGridDist,
        ModifiedQuadraticAssignment,
        ThreeSat,
        MaxCut,
    )
}


class UnknownTaskError(UsageError, KeyError):
    """Raised by :func:`get_task` for a name that is not registered (exit 2)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(task_names())}", hint="see `stop tasks`")
        self.name = name

    def __str__(self) -> str:
        return self.message


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str, options: TaskOptions | None = None) -> Task:
    """The task called ``name`` (with default options unless given)."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise UnknownTaskError(name) from None
    return cls(options)


def all_tasks() -> list[Task]:
    return [cls() for cls in TASKS.values()]
