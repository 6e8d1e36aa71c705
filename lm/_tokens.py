"""Deterministic token counting for budgets when the endpoint reports no usage (offline model).

Word pieces: runs of letters/digits/underscore, or single other non-space characters. Roughly
matches BPE counts on code (within a factor of ~1.5); what matters is that it is a pure function.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ("count_message_tokens", "count_tokens")

_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def count_tokens(text: str) -> int:
    return sum(1 for _ in _PIECE.finditer(text))


def count_message_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Prompt tokens of a chat: content pieces plus a fixed 3 per message for role framing."""
    return sum(3 + count_tokens(str(m.get("content") or "")) for m in messages)
