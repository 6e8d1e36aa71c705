"""Reading LM replies of self-repair: the program a reply stands for, and its explanation.

Self-repair (Olausson et al., ICLR 2024) asks for HumanEval programs and for explanations of
failures; replies come as prose, fenced blocks, bare function bodies or nothing usable. A reply
without code is recorded as a stub program that fails its check naming the cause
(:data:`NO_CODE`), so it can be repaired like any other failure.
"""

from __future__ import annotations

import ast
import re

from lm import extract_blocks
from tasks.humaneval import Problem

__all__ = ("NO_CODE", "extract_program", "no_code_program", "without_code")

NO_CODE = "no code in reply"
_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


def _preamble(problem: Problem) -> str:
    """The prompt up to the entry point's ``def``: imports and helper functions it relies on."""
    m = re.search(rf"^(async\s+)?def\s+{re.escape(problem.entry_point)}\s*\(", problem.prompt, re.MULTILINE)
    return problem.prompt[: m.start()] if m else ""


def _as_body(code: str) -> str:
    """A completion of the prompt: indent it when the model wrote the body flush left."""
    lines = code.strip("\n").splitlines()
    if lines and not lines[0][:1].isspace():
        lines = [("    " + line) if line.strip() else line for line in lines]
    return "\n".join(lines) + "\n"


def _code_of(text: str) -> str | None:
    """Largest fenced Python block; else the largest fenced block at all (a syntax error is a
    legitimate failure); else the whole reply if it is Python; else ``None``."""
    blocks = extract_blocks(text)
    if blocks:
        return max(blocks, key=len)
    raw = [m.group(1) for m in _FENCE.finditer(text) if m.group(1).strip()]
    if raw:
        return max(raw, key=len)
    return text if text.strip() else None


def extract_program(problem: Problem, text: str) -> str | None:
    """The full program an LM reply stands for, or ``None`` when the reply holds no code.

    * a program defining the entry point is kept, with the prompt's preamble (imports, helper
      functions) put in front unless it is already there;
    * a function body (what a completion model writes) completes the prompt;
    * unfenced text counts as code only if it parses, alone or as a body of the prompt;
    * anything else fenced is kept as is, so the check reports its error.
    """
    code = _code_of(text)
    if code is None:
        return None
    fenced = code is not text
    code = code.strip("\n") + "\n"
    if _defines(code, problem.entry_point):
        pre = _preamble(problem)
        return code if not pre.strip() or pre.strip() in code else pre.rstrip("\n") + "\n\n" + code
    completed = problem.complete(_as_body(code))
    if _parses(completed) and _defines(completed, problem.entry_point):
        return completed
    if fenced or _parses(code):
        return code
    return None


def no_code_program(problem: Problem) -> str:
    """The stub recorded for a reply without code: it fails its check, naming the cause."""
    return problem.complete(f"    raise NotImplementedError({NO_CODE!r})\n")


def without_code(text: str) -> str:
    """The explanation part of a joint reply: the text with fenced blocks removed."""
    prose = _FENCE.sub("", text).strip()
    return prose or text.strip()
