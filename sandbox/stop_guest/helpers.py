"""Helpers the STOP reference offers improvers. Inside the sandbox this module is also importable
as ``helpers``, so improvers written for the reference (``from helpers import extract_code``) run
unchanged.

``extract_code`` follows the reference's meaning: the largest fenced code block of a reply,
``None`` when the reply has none, mapped element-wise over a list. Fences nest: a fence line
with a language tag (```` ```python ````) opens a block, a bare fence closes the innermost
open one, so a program that itself contains fenced text is kept whole.
"""

from __future__ import annotations

import re
from typing import overload

__all__ = ("extract_code",)

_OPEN = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+.#-]+)[^\n`]*$")
_CLOSE = re.compile(r"^[ \t]*```[ \t]*$")


def _largest_block(text: str) -> str | None:
    blocks: list[str] = []
    depth = 0
    start = 0
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        stripped = line.rstrip("\r\n")
        if _OPEN.match(stripped):
            if depth == 0:
                start = i + 1
            depth += 1
        elif _CLOSE.match(stripped):
            if depth == 0:  # a bare fence with nothing open opens a block too
                start = i + 1
                depth = 1
                continue
            depth -= 1
            if depth == 0:
                blocks.append("".join(lines[start:i]))
    if not blocks:
        return None
    return max(blocks, key=len).strip("\n")


@overload
def extract_code(text: str) -> str | None: ...
@overload
def extract_code(text: list[str | None]) -> list[str | None]: ...
def extract_code(text: str | list[str | None] | None) -> str | list[str | None] | None:
    """The largest fenced code block of ``text`` (``None`` if there is none); a list maps."""
    if isinstance(text, list | tuple):
        return [None if t is None else extract_code(str(t)) for t in text]
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"extract_code() takes a str or a list of str, not {type(text).__name__}")
    return _largest_block(text)
