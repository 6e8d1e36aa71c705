"""What a self-repair run is asked: its problems and tree sizes (``stop repair`` options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from outcome import UsageError
from tasks.humaneval import load_problems

__all__ = ("DEFAULT_PROBLEMS", "RepairOptions", "resolve_problems")

#: Without ``--problems``: the first five HumanEval problems (a cheap default; "all" gives 164).
DEFAULT_PROBLEMS = 5


@dataclass(frozen=True)
class RepairOptions:
    problems: list[str]
    n_p: int = 5
    n_fr: int = 3
    feedback_model: str | None = None
    separate_feedback: bool = False
    full_tree: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepairOptions:
        problems = data.get("problems") or resolve_problems(None)
        return cls(
            problems=list(problems),
            n_p=int(data.get("n_p", 5)),
            n_fr=int(data.get("n_fr", 3)),
            feedback_model=data.get("feedback_model") or None,
            separate_feedback=bool(data.get("separate_feedback")) or bool(data.get("feedback_model")),
            full_tree=bool(data.get("full_tree")),
        )


def resolve_problems(specs: list[str] | None) -> list[str]:
    """Task ids from ``HumanEval/3``, ``3`` or ``all``; default the first ``DEFAULT_PROBLEMS``."""
    ids = [p.task_id for p in load_problems()]
    if not specs:
        return ids[:DEFAULT_PROBLEMS]
    out: list[str] = []
    for spec in specs:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if part.lower() == "all":
                out.extend(ids)
                continue
            task_id = f"HumanEval/{part}" if part.isdigit() else part
            if task_id not in ids:
                raise UsageError(
                    f"unknown HumanEval problem {part!r} (use HumanEval/0..HumanEval/{len(ids) - 1}, a number, or all)"
                )
            out.append(task_id)
    return list(dict.fromkeys(out))
