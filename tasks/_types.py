"""Value types shared by every task: instances, per-instance outcomes and evaluations.

An :class:`Instance` splits cleanly into what the guest may see (``args``) and what only the
host-side scorer may see (``hidden``). Only ``args`` ever goes into a sandbox job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ("ERROR_KINDS", "Evaluation", "Instance", "InstanceOutcome")

#: ``error_kind`` values beyond the sandbox statuses: the host-side reasons an instance scores 0.
ERROR_KINDS: tuple[str, ...] = ("time_limit", "invalid", "not_run")


@dataclass(frozen=True, eq=False)
class Instance:
    """One generated task instance.

    ``args`` are the positional arguments of the candidate's function (sent to the guest);
    ``hidden`` holds the answers and scoring constants (host only, never sent anywhere).
    """

    index: int
    seed: int
    args: tuple[Any, ...]
    hidden: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InstanceOutcome:
    """How one instance went: its score in [0, 1], the guest call time, and why.

    ``error_kind`` is ``None`` when the output was valid and scored; otherwise a sandbox status
    (``"timeout"``, ``"error"``, ...) or one of :data:`ERROR_KINDS`. ``reason`` is always a short
    human-readable explanation, also for valid outputs (e.g. ``"accuracy 17/20"``).
    """

    index: int
    score: float
    time_s: float | None
    error_kind: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "score": self.score,
            "time_s": self.time_s,
            "error_kind": self.error_kind,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceOutcome:
        time_s = data["time_s"]
        return cls(
            index=int(data["index"]),
            score=float(data["score"]),
            time_s=None if time_s is None else float(time_s),
            error_kind=data["error_kind"],
            reason=str(data["reason"]),
        )


@dataclass(frozen=True)
class Evaluation:
    """The utility of one solution on one split, with every instance's outcome."""

    task: str
    split: str
    utility: float
    instances: tuple[InstanceOutcome, ...]

    def __post_init__(self) -> None:
        if not (math.isfinite(self.utility) and 0.0 <= self.utility <= 1.0):
            raise ValueError(f"utility must be a finite number in [0, 1], got {self.utility!r}")

    @property
    def n_errors(self) -> int:
        return sum(1 for o in self.instances if o.error_kind is not None)

    def error_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.instances:
            if o.error_kind is not None:
                counts[o.error_kind] = counts.get(o.error_kind, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "split": self.split,
            "utility": self.utility,
            "instances": [o.to_dict() for o in self.instances],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        instances: Sequence[Mapping[str, Any]] = data["instances"]
        return cls(
            task=str(data["task"]),
            split=str(data["split"]),
            utility=float(data["utility"]),
            instances=tuple(InstanceOutcome.from_dict(o) for o in instances),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-native form (like ``JobResult.to_json``): {"task", "split", "utility", "instances"}."""
        return self.to_dict()

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> Evaluation:
        """Inverse of :meth:`to_json`; also accepts the JSON text."""
        if isinstance(data, (str, bytes)):
            data = json.loads(data)
        assert isinstance(data, Mapping)
        return cls.from_dict(data)

    def canonical_json(self) -> str:
        """Sorted keys, no spaces: equal evaluations give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
