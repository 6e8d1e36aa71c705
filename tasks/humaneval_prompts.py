"""What self-repair shows the model: the sampling, joint, feedback and fix prompts."""

from __future__ import annotations

from tasks.humaneval import Problem

__all__ = ("SYSTEM", "TEMPERATURE", "feedback_prompt", "fix_prompt", "joint_prompt", "sample_prompt")

#: The study samples at temperature 0.8 everywhere (its repository's repair script defaults to
#: 0.5; we follow the paper).
TEMPERATURE = 0.8
SYSTEM = "You are an expert Python programmer."


def sample_prompt(problem: Problem) -> str:
    return (
        "Complete the following Python function so that it satisfies its docstring. Reply with the "
        "complete function (its signature and any imports it needs) in a single ```python code block.\n\n"
        f"```python\n{problem.prompt.rstrip()}\n```\n"
    )


def _failure(program: str, feedback: str) -> str:
    # The failing program comes first: it is what is to be fixed (and the offline model mutates
    # the first fenced program of a prompt).
    return (
        "### Incorrect program\n"
        f"```python\n{program.rstrip()}\n```\n\n"
        "### Error\n"
        f"The program fails the tests with: {feedback}\n\n"
    )


def _spec(problem: Problem) -> str:
    return f"### Specification\n```python\n{problem.prompt.rstrip()}\n```\n\n"


def joint_prompt(problem: Problem, program: str, feedback: str) -> str:
    return (
        _failure(program, feedback)
        + _spec(problem)
        + "First explain in a few sentences what is wrong with the incorrect program. Then write the "
        "fixed, complete program in a single ```python code block.\n"
    )


def feedback_prompt(problem: Problem, program: str, feedback: str) -> str:
    return (
        _failure(program, feedback)
        + _spec(problem)
        + "Explain in a few sentences what is wrong with the incorrect program and how to fix it. "
        "Do not write any code.\n"
    )


def fix_prompt(problem: Problem, program: str, feedback: str, explanation: str) -> str:
    return (
        _failure(program, feedback) + _spec(problem) + f"### Explanation of the failure\n{explanation.strip()}\n\n"
        "Write the fixed, complete program in a single ```python code block.\n"
    )
