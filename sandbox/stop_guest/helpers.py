"""Helpers the STOP reference offers to improvers, available in the guest as ``stop_guest``."""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The largest fenced code block in ``text`` (the text itself when there is none)."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return text.strip()
    return max(blocks, key=len).strip()
