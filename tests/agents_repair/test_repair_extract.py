"""Code extraction from LM replies: fenced blocks, bodies, prose, the prompt's preamble."""

from __future__ import annotations

import pytest

from agents.repair import resolve_problems
from outcome import UsageError
from tasks.humaneval import get_problem
from tasks.humaneval_extract import extract_program, no_code_program

P0 = get_problem("HumanEval/0")  # has `from typing import List` before its def


def test_largest_fenced_block_wins() -> None:
    full = f"{P0.prompt}{P0.canonical_solution}"
    reply = f"Try:\n```python\nx = 1\n```\nor better:\n```python\n{full}```\n"
    assert extract_program(P0, reply) == full


def test_function_without_imports_gets_the_preamble() -> None:
    reply = "```python\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    return False\n```"
    program = extract_program(P0, reply)
    assert program is not None and program.startswith("from typing import List")
    assert program.rstrip().endswith("return False")


def test_a_body_completes_the_prompt() -> None:
    assert extract_program(P0, "```\nreturn True\n```") == P0.prompt + "    return True\n"
    assert extract_program(P0, "    return True\n") == P0.prompt + "    return True\n"  # unfenced body


def test_prose_is_no_code_and_a_broken_fence_is_kept() -> None:
    assert extract_program(P0, "I am not able to help with that.") is None
    assert extract_program(P0, "") is None
    assert extract_program(P0, "```python\ndef has_close_elements(:\n```") == "def has_close_elements(:\n"
    stub = no_code_program(P0)
    assert stub.startswith(P0.prompt) and "no code in reply" in stub


def test_problem_specs() -> None:
    assert resolve_problems(None) == [f"HumanEval/{i}" for i in range(5)]
    assert resolve_problems(["3", "HumanEval/7,3"]) == ["HumanEval/3", "HumanEval/7"]
    assert len(resolve_problems(["all"])) == 164
    with pytest.raises(UsageError, match="unknown HumanEval problem"):
        resolve_problems(["HumanEval/999"])
