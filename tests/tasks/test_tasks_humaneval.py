"""HumanEval in the sandbox: canonical solutions pass, stubs fail, loops time out."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import pytest

from sandbox import SandboxConfig, SandboxPool
from tasks.humaneval import (
    FEEDBACK_LIMIT,
    TIME_LIMIT_S,
    CheckResult,
    Problem,
    check,
    get_problem,
    load_problems,
)


def check_many(pairs: Sequence[tuple[Problem, str]]) -> list[CheckResult]:
    async def main() -> list[CheckResult]:
        out: list[CheckResult | None] = [None] * len(pairs)
        async with SandboxPool(SandboxConfig(workers=2)) as pool:

            async def one(k: int) -> None:
                problem, program = pairs[k]
                out[k] = await check(problem, program, pool)

            async with anyio.create_task_group() as tg:
                for k in range(len(pairs)):
                    tg.start_soon(one, k)
        return [r for r in out if r is not None]

    return anyio.run(main)


def test_loads_164_problems() -> None:
    problems = load_problems()
    assert len(problems) == 164
    assert problems[0].task_id == "HumanEval/0" and problems[-1].task_id == "HumanEval/163"
    assert all("def check(candidate)" in p.test for p in problems)


@pytest.fixture(scope="module")
def canonical_and_stub() -> tuple[list[CheckResult], list[CheckResult]]:
    problems = load_problems()
    pairs = [(p, p.canonical_program) for p in problems] + [(p, p.complete("    pass\n")) for p in problems]
    results = check_many(pairs)
    return results[: len(problems)], results[len(problems) :]


def test_all_canonical_solutions_pass(canonical_and_stub: tuple) -> None:
    canonical, _ = canonical_and_stub
    failed = [(p.task_id, r) for p, r in zip(load_problems(), canonical, strict=True) if not r.passed]
    assert failed == []


def test_every_pass_stub_fails_with_feedback(canonical_and_stub: tuple) -> None:
    _, stubs = canonical_and_stub
    for p, r in zip(load_problems(), stubs, strict=True):
        assert not r.passed, p.task_id
        assert r.status == "failed", (p.task_id, r)
        assert 0 < len(r.feedback) <= FEEDBACK_LIMIT


def test_infinite_loop_times_out_within_the_limit() -> None:
    problem = get_problem("HumanEval/0")
    start = time.monotonic()
    (r,) = check_many([(problem, problem.complete("    while True:\n        pass\n"))])
    elapsed = time.monotonic() - start
    assert not r.passed and r.status in ("call_timeout", "timeout")
    assert r.feedback.startswith("Timeout") and f"{TIME_LIMIT_S:g} s" in r.feedback
    assert elapsed < 60  # killed near the limit, not left running


def test_feedback_names_the_failing_assertion_or_exception() -> None:
    problem = get_problem("HumanEval/0")
    wrong, raising, syntax, huge = check_many(
        [
            (problem, problem.complete("    return True\n")),
            (problem, problem.complete("    raise ValueError('bad input')\n")),
            (problem, problem.complete("    return (\n")),
            (problem, problem.complete("    raise ValueError('x' * 10000)\n")),
        ]
    )
    assert wrong.feedback == (
        "AssertionError: failed `assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False`"
    )
    assert raising.feedback.startswith("ValueError: bad input (while running `assert candidate(")
    assert not syntax.passed and "SyntaxError" in syntax.feedback
    assert len(huge.feedback) <= FEEDBACK_LIMIT and huge.feedback.endswith("...")


def test_a_program_cannot_claim_success_without_running_the_tests() -> None:
    problem = get_problem("HumanEval/2")
    forged = problem.complete("    return 0.0\n\nimport os\nos._exit(0)\n")
    (r,) = check_many([(problem, forged)])
    assert not r.passed
