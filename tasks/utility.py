"""The utility handed to improvers: val scores only, under a host-side budget.

The improver runs in the sandbox; its ``utility(solution)`` calls leave the guest as requests
and are answered by a :class:`HostUtility` living in the host process. The budget counter is a
host object the guest never holds, so nothing the guest does can reset it, raise it or read the
test split: the guest only ever receives the float val utility (or a budget-exceeded error).
"""

from __future__ import annotations

import threading
from typing import Any

from sandbox import BridgeError, UtilityProxy
from tasks._types import Evaluation
from tasks.base import Task
from tasks.evaluate import JobRunner, run_jobs

__all__ = ("BudgetExceeded", "HostUtility", "JobRunner", "UtilityBudget")

VISIBLE_SPLIT = "val"


class BudgetExceeded(RuntimeError):
    """Raised by :meth:`UtilityBudget.charge` once all uses are spent."""

    def __init__(self, total: int) -> None:
        super().__init__(f"utility budget exhausted: all {total} uses have been spent")
        self.total = total


class UtilityBudget:
    """A count of allowed utility calls. It can only go down; there is no reset."""

    __slots__ = ("_lock", "_total", "_used")

    def __init__(self, total: int) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"utility budget must be a non-negative int, got {total!r}")
        self._total = total
        self._used = 0
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return self._total

    @property
    def used(self) -> int:
        return self._used

    @property
    def remaining(self) -> int:
        return self._total - self._used

    def charge(self) -> int:
        """Spend one use and return its ordinal (1-based); raise :class:`BudgetExceeded` if none left."""
        with self._lock:
            if self._used >= self._total:
                raise BudgetExceeded(self._total)
            self._used += 1
            return self._used

    def __repr__(self) -> str:
        return f"UtilityBudget(used={self._used}, total={self._total})"


class HostUtility:
    """Val-split utility of one task, charged against a budget, answering a guest's calls."""

    def __init__(self, task: Task, runner: JobRunner, budget: UtilityBudget, *, seed: int = 0) -> None:
        self._task = task
        self._runner = runner
        self._budget = budget
        self._seed = seed
        self._history: list[Evaluation] = []

    @property
    def description(self) -> str:
        """The task text shown to the improver."""
        return self._task.description

    @property
    def budget(self) -> UtilityBudget:
        return self._budget

    @property
    def history(self) -> list[Evaluation]:
        """Host-side record of every evaluation (never shown to the guest)."""
        return list(self._history)

    def proxy(self) -> UtilityProxy:
        """The placeholder to put in an improver session's args (the guest's ``utility``)."""
        return UtilityProxy(description=self._task.description, budget=self._budget.remaining)

    async def handle_request(self, kind: str, body: dict[str, Any], occurrence: int) -> float:
        """Answer a guest ``utility(solution)`` bridge request (``SandboxPool.run_session``).

        Refusals (spent budget, malformed request) become an exception in the guest.
        """
        if kind != "utility":
            raise BridgeError(f"this handler answers utility requests, not {kind!r}")
        solution = body.get("solution")
        if not isinstance(solution, str):
            raise BridgeError("utility() takes the solution's program text (str)")
        try:
            return await self(solution)
        except BudgetExceeded as exc:
            raise BridgeError(str(exc)) from None

    async def __call__(self, solution_text: str) -> float:
        """Charge one use, evaluate on val, and return only the utility."""
        self._budget.charge()
        if not isinstance(solution_text, str) or not solution_text.strip():
            evaluation = Evaluation(self._task.name, VISIBLE_SPLIT, 0.0, ())
        else:
            jobs = self._task.jobs(solution_text, VISIBLE_SPLIT, seed=self._seed)
            results = await run_jobs(self._runner, jobs)
            evaluation = self._task.fold(VISIBLE_SPLIT, results)
        self._history.append(evaluation)
        return evaluation.utility
