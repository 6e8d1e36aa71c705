"""The outcome contract shared by every ``stop`` command.

Exit codes:

====  =====================================================================================
0     the command did what was asked
1     it ran but failed: the improvement failed, every generation failed, the LM was
      unusable, a spend cap was reached, a replay diverged, an audit found tampering
2     usage or configuration error; nothing was run
3     the environment cannot run it: no sandbox, store unwritable, disk full
129   interrupted by SIGHUP (the run is resumable)
130   interrupted by SIGINT / Ctrl-C (the run is resumable)
143   interrupted by SIGTERM (the run is resumable)
====  =====================================================================================

A :class:`StopError` is a problem the user can fix. The CLI renders it as one line on stderr
(plus a line saying what to do) with its exit code; anything else is a bug and propagates with
its traceback.
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = (
    "ConfigError",
    "EnvironmentProblem",
    "ExitCode",
    "RunFailed",
    "Status",
    "StopError",
    "UsageError",
    "exit_code_for",
)


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    ENVIRONMENT = 3
    HANGUP = 129
    INTERRUPTED = 130
    TERMINATED = 143


class Status(enum.StrEnum):
    """The ``status`` field of every run command's ``--json`` summary."""

    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    BUDGET_EXHAUSTED = "budget_exhausted"


_STATUS_EXIT = {
    Status.FINISHED: ExitCode.OK,
    Status.FAILED: ExitCode.FAILED,
    Status.BUDGET_EXHAUSTED: ExitCode.FAILED,
    Status.INTERRUPTED: ExitCode.INTERRUPTED,
}


def exit_code_for(status: Status) -> ExitCode:
    """The exit code of a run that ended with ``status``."""
    return _STATUS_EXIT[status]


class StopError(Exception):
    """A user-fixable problem: one line on stderr, what to do, and the contract's exit code."""

    exit_code: ClassVar[ExitCode] = ExitCode.USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """The text the CLI prints (without a traceback)."""
        text = f"stop: error: {self.message}"
        return f"{text}\n  {self.hint}" if self.hint else text


class UsageError(StopError):
    """Bad arguments, an unknown run, task or node: nothing was run (exit 2)."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A malformed or refused run configuration (exit 2); the message names the field."""


class EnvironmentProblem(StopError):
    """This machine cannot run the command: no sandbox, unwritable store, disk full (exit 3)."""

    exit_code = ExitCode.ENVIRONMENT


class RunFailed(StopError):
    """The command ran and failed (exit 1)."""

    exit_code = ExitCode.FAILED
