"""``helpers``: what improvers written for the STOP reference import (``from helpers import extract_code``).

Stdlib only; this file is on the guest's import path as the top-level module ``helpers``.
"""

from __future__ import annotations

from typing import Any

__all__ = ("extract_code",)

_FENCE = "`" * 3


def _largest_block(text: str) -> str | None:
    """The largest fenced block, nesting-aware; ``None`` when there is none.

    A fence line carrying a language tag (`` ```python ``) opens a level, a bare fence closes
    one; a bare fence outside any block opens one (the reference loses untagged blocks there).
    The block's size counts its fence lines; the first largest wins; an unclosed block is
    ignored. The inner text is returned without its outer fence lines.
    """
    best: list[str] = []
    best_size = 0
    current: list[str] = []
    depth = 0
    for line in text.split("\n"):
        if not line.startswith(_FENCE):
            if depth > 0:
                current.append(line)
            continue
        tagged = bool(line[3:].strip())
        if tagged or depth == 0:
            depth += 1
            current.append(line)
            continue
        depth -= 1
        current.append(line)
        if depth == 0:
            size = sum(len(x) + 1 for x in current)
            if size > best_size:
                best, best_size = current, size
            current = []
    inner = "\n".join(best[1:-1])
    return inner if inner.strip() else None


def extract_code(text: Any) -> Any:
    """The largest fenced code block of a reply (``None`` if it has none).

    A list (or tuple) maps element-wise; ``None`` and other non-text entries give ``None``.
    """
    if isinstance(text, str):
        return _largest_block(text)
    if isinstance(text, (list, tuple)):
        return [extract_code(t) for t in text]
    return None
