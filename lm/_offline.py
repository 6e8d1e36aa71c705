"""The offline default: a seeded program-mutation proposer, honestly not a language model.

Used when no endpoint is configured. Given a prompt holding a fenced Python block it replies
like an LM would (an idea sentence, then a ```python block) with that program changed by random
AST mutations (see ``lm._mutate``). Randomness derives from sha256 of (canonical request, sample
ordinal, index within n): deterministic across processes and machines; ``hash()`` is never used.
"""

from __future__ import annotations

import ast
import random
from typing import Any

from events import canonical_json, sha256_hex
from lm._mutate import extract_blocks, mutate_program
from lm._request import Completion, LMRequest
from lm._tokens import count_message_tokens, count_tokens

__all__ = ("NO_CODE_REPLY", "OFFLINE_LABEL", "OfflineMutationModel")

OFFLINE_LABEL = "offline, no language model"
NO_CODE_REPLY = (
    "I can only propose program changes, and this prompt holds no fenced Python code block "
    "(```python ... ```), so there is nothing to change."
)


def _defines_function(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in tree.body)


class OfflineMutationModel:
    """An ``LMBackend`` that mutates the prompt's program. ``version`` is part of its identity:
    bump it whenever the mutation operators change, since recorded answers depend on them."""

    offline = True
    version = 1

    def __init__(self, *, max_ops: int = 3) -> None:
        self.max_ops = max_ops
        self.name = f"offline-mutation-v{self.version}"
        self.default_model = self.name

    def __repr__(self) -> str:
        return f"OfflineMutationModel(version={self.version}, max_ops={self.max_ops})"

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "offline",
            "label": OFFLINE_LABEL,
            "name": self.name,
            "detail": "seeded random AST mutations of the prompt's program (no language model is called)",
        }

    def seed_for(self, req: LMRequest, ordinal: int, index: int) -> int:
        digest = sha256_hex(
            canonical_json(
                {
                    "offline": self.version,
                    "request": req.canonical(),
                    "ordinal": ordinal,
                    "index": index,
                }
            )
        )
        return int(digest[:16], 16)

    def reply(self, req: LMRequest, ordinal: int = 0, index: int = 0) -> str:
        """The text of sample ``index`` of the ``ordinal``-th identical request."""
        rng = random.Random(self.seed_for(req, ordinal, index))
        text = "\n\n".join(str(m.get("content") or "") for m in req.message_dicts if m.get("role") != "system")
        blocks = [b for b in extract_blocks(text) if _defines_function(b)]
        if not blocks:
            return NO_CODE_REPLY
        primary, donors = blocks[0], blocks[1:]
        mutation = mutate_program(primary, rng, donors=donors, max_ops=self.max_ops)
        if mutation is None:  # pragma: no cover - blocks were filtered to parseable ones
            return NO_CODE_REPLY
        idea = mutation.idea[0].upper() + mutation.idea[1:]
        idea = " ".join(idea.split())
        return f"Idea: {idea}.\n\n```python\n{mutation.code}\n```\n"

    async def complete(self, req: LMRequest, *, ordinal: int = 0) -> list[Completion]:
        prompt_tokens = count_message_tokens(req.message_dicts)
        out = []
        for i in range(req.n):
            text = self.reply(req, ordinal, i)
            out.append(
                Completion(
                    text=text,
                    prompt_tokens=prompt_tokens if i == 0 else 0,
                    completion_tokens=count_tokens(text),
                    finish_reason="stop",
                )
            )
        return out
