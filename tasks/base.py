"""The task base class: instances per split, sandbox jobs, and the fold into an evaluation.

``jobs`` and ``fold`` are pure and deterministic: the same solution, split and seed always give
the same job list, and the same recorded job results always fold into the same
:class:`~tasks._types.Evaluation`. That is what lets the agents run the jobs through the event
log and replay the fold from recorded results.

Instance generation never touches the process-wide RNGs: ``random.Random(seed)`` and
``numpy.random.RandomState(seed)`` produce exactly the streams of ``random.seed(seed)`` and
``numpy.random.seed(seed)`` followed by the module-level draws the reference uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from sandbox import Job, JobResult
from tasks._types import Evaluation, Instance, InstanceOutcome
from tasks.visible import VisibleParts, render

__all__ = ("SPLIT_SEEDS", "WALL_SLACK_S", "Task", "TaskOptions", "instance_digest", "job_seed")

#: Base seeds of the two splits: instance i of a split uses seed ``base + i`` (the reference's).
SPLIT_SEEDS: Mapping[str, int] = {"val": 4321, "test": 5678}

#: Slack added to the per-instance time limit for the job's wall timeout, so that the parent
#: kills runaway code (start-up, imports and result encoding are outside the call timer).
WALL_SLACK_S = 3.0

_cache_lock = threading.Lock()
_instance_cache: dict[tuple[str, str], tuple[Instance, ...]] = {}


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """Per-task knobs. ``time_limit_s`` overrides the task's limit (``None`` keeps it);
    ``fail_zeroes`` reproduces the reference quirk where one failed instance zeroes the whole
    utility (only meaningful where the reference did it; off by default)."""

    time_limit_s: float | None = None
    fail_zeroes: bool = False


def _encode(obj: Any) -> Any:
    """A canonical JSON-able form of instance data, numpy arrays included (dtype and shape)."""
    if isinstance(obj, np.ndarray):
        return {
            "__ndarray__": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest(),
            "dtype": obj.dtype.str,
            "shape": list(obj.shape),
        }
    if isinstance(obj, (list, tuple)):
        return [_encode(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, float):
        return repr(obj)
    return obj


def instance_digest(instances: Sequence[Instance]) -> str:
    """sha256 over the canonical form of instances (index, seed, args, hidden)."""
    payload = [[i.index, i.seed, _encode(i.args), _encode(dict(i.hidden))] for i in instances]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def job_seed(task: str, split: str, index: int, seed: int) -> int:
    """The guest RNG seed of one job: a 32-bit hash of (task, split, instance, evaluation seed)."""
    digest = hashlib.sha256(f"{task}|{split}|{index}|{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _freeze(obj: Any) -> Any:
    """Make the numpy arrays inside cached instance data read-only."""
    if isinstance(obj, Instance):
        _freeze(obj.args)
        _freeze(list(obj.hidden.values()))
    elif isinstance(obj, np.ndarray):
        obj.setflags(write=False)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            _freeze(x)
    return obj


def _guest_copy(obj: Any) -> Any:
    """Writable copies of the (read-only, cached) instance arrays, for a job's arguments."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, tuple):
        return tuple(_guest_copy(x) for x in obj)
    if isinstance(obj, list):
        return [_guest_copy(x) for x in obj]
    return obj


class Task(ABC):
    """A downstream task: subclasses define the generator, validator, scorer and texts."""

    name: ClassVar[str]
    description: ClassVar[str]
    seed_solution: ClassVar[str]
    split_sizes: ClassVar[Mapping[str, int]]
    default_time_limit_s: ClassVar[float]
    #: Instances the visible utility program (``utility.str``) draws when run as shown.
    visible_instances: ClassVar[int]
    function_name: ClassVar[str] = "algorithm"

    def __init__(self, options: TaskOptions | None = None) -> None:
        self.options = options or TaskOptions()
        if self.options.time_limit_s is not None and not self.options.time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive, got {self.options.time_limit_s}")

    def with_options(self, **changes: Any) -> Task:
        """A copy of this task with some options changed (e.g. a relaxed time limit)."""
        return type(self)(dataclasses.replace(self.options, **changes))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"

    @property
    def time_limit_s(self) -> float:
        """Per-instance limit on the guest's call, in wall seconds."""
        if self.options.time_limit_s is not None:
            return self.options.time_limit_s
        return self.default_time_limit_s

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_sizes)

    @abstractmethod
    def visible_parts(self) -> VisibleParts:
        """This task's part of the visible utility program (see :mod:`tasks.visible`)."""

    @property
    def utility_text(self) -> str:
        """The visible utility program an improver is shown as ``utility.str``."""
        return render(
            self.visible_parts(),
            tests=self.visible_instances,
            time_limit_s=self.time_limit_s,
            val_instances=self.split_sizes["val"],
            fail_zeroes=self.options.fail_zeroes,
        )

    # -- generation -------------------------------------------------------------------------

    @abstractmethod
    def generate(self, index: int, seed: int) -> Instance:
        """Instance ``index`` drawn from ``seed`` in the reference's exact draw order."""

    def instances(self, split: str) -> list[Instance]:
        """The split's instances (deterministic; generated once per process and cached)."""
        size = self._split_size(split)
        key = (self.name, split)
        with _cache_lock:
            cached = _instance_cache.get(key)
        if cached is None:
            base = SPLIT_SEEDS[split]
            cached = tuple(_freeze(self.generate(i, base + i)) for i in range(size))
            with _cache_lock:
                _instance_cache.setdefault(key, cached)
        return list(cached)

    def _split_size(self, split: str) -> int:
        if split not in self.split_sizes:
            raise ValueError(f"unknown split {split!r} for task {self.name!r}; known: {', '.join(self.split_sizes)}")
        return self.split_sizes[split]

    def _select(self, split: str, indices: Sequence[int] | None) -> list[Instance]:
        instances = self.instances(split)
        if indices is None:
            return instances
        out = []
        for i in indices:
            if not 0 <= i < len(instances):
                raise IndexError(f"instance index {i} out of range for {self.name}/{split}")
            out.append(instances[i])
        return out

    # -- validation and scoring ---------------------------------------------------------------

    @abstractmethod
    def validate(self, instance: Instance, raw_value: Any) -> tuple[bool, Any, str]:
        """``(ok, normalised value, reason)`` for an untrusted guest return value."""

    @abstractmethod
    def score(self, instance: Instance, value: Any) -> float:
        """Score in [0, 1] of a *validated* value."""

    def explain(self, instance: Instance, value: Any, score: float) -> str:
        """Reason text for a valid, scored output (subclasses say more)."""
        return f"valid output; score {score:.4f}"

    # -- jobs and fold --------------------------------------------------------------------------

    def jobs(
        self,
        solution_text: str,
        split: str,
        *,
        seed: int = 0,
        indices: Sequence[int] | None = None,
    ) -> list[Job]:
        """One sandbox job per instance (only the instance's ``args`` go to the guest)."""
        limit = self.time_limit_s
        return [
            Job(
                program=solution_text,
                function=self.function_name,
                args=[_guest_copy(a) for a in inst.args],
                kwargs={},
                call_timeout_s=limit,
                wall_timeout_s=limit + WALL_SLACK_S,
                seed=job_seed(self.name, split, inst.index, seed),
            )
            for inst in self._select(split, indices)
        ]

    def outcome(self, instance: Instance, result: JobResult) -> InstanceOutcome:
        """Fold one job result into an instance outcome (never raises on guest behaviour)."""
        time_s = result.call_time_s
        if time_s is not None and not math.isfinite(time_s):
            time_s = None
        if result.status != "ok":
            detail = (result.error or result.status).strip().splitlines()
            tail = detail[-1][:200] if detail else ""
            reason = f"sandbox status {result.status}" + (f": {tail}" if tail else "")
            return InstanceOutcome(instance.index, 0.0, time_s, result.status, reason)
        limit = self.time_limit_s
        if time_s is None:
            return InstanceOutcome(instance.index, 0.0, None, "invalid", "no call time recorded")
        if time_s > limit:
            reason = f"call took {time_s:.3f} s, over the {limit:g} s limit"
            return InstanceOutcome(instance.index, 0.0, time_s, "time_limit", reason)
        try:
            raw = result.value
        except Exception as exc:  # noqa: BLE001 - the sandbox's decoder refused the guest's data
            reason = f"undecodable output: {str(exc)[:200]}"
            return InstanceOutcome(instance.index, 0.0, time_s, "invalid_output", reason)
        try:
            ok, value, why = self.validate(instance, raw)
        except Exception as exc:  # noqa: BLE001 - a validator bug must not crash the fold; record it
            ok, value, why = False, None, f"validator rejected output ({type(exc).__name__})"
        if not ok:
            return InstanceOutcome(instance.index, 0.0, time_s, "invalid", f"invalid output: {why}")
        score = float(self.score(instance, value))
        if not math.isfinite(score):
            raise AssertionError(f"{self.name} scorer produced {score!r}")  # host bug, not guest
        score = min(1.0, max(0.0, score))
        return InstanceOutcome(instance.index, score, time_s, None, self.explain(instance, value, score))

    def aggregate(self, outcomes: Sequence[InstanceOutcome]) -> float:
        """Mean instance score; with ``fail_zeroes`` any failed instance zeroes the utility."""
        if not outcomes:
            return 0.0
        if self.options.fail_zeroes and any(o.error_kind is not None for o in outcomes):
            return 0.0
        return math.fsum(o.score for o in outcomes) / len(outcomes)

    def fold(
        self,
        split: str,
        results: Sequence[JobResult],
        *,
        indices: Sequence[int] | None = None,
    ) -> Evaluation:
        """The evaluation of recorded job results, in the order ``jobs`` produced them."""
        instances = self._select(split, indices)
        if len(results) != len(instances):
            raise ValueError(f"{self.name}/{split}: expected {len(instances)} job results, got {len(results)}")
        outcomes = tuple(self.outcome(i, r) for i, r in zip(instances, results, strict=True))
        utility = min(1.0, max(0.0, self.aggregate(outcomes)))
        return Evaluation(task=self.name, split=split, utility=utility, instances=outcomes)

    def info(self) -> dict[str, Any]:
        """What ``stop tasks show`` prints: the improver-facing text, splits and limits."""
        return {
            "name": self.name,
            "function": self.function_name,
            "splits": dict(self.split_sizes),
            "time_limit_s": self.time_limit_s,
            "wall_timeout_s": self.time_limit_s + WALL_SLACK_S,
            "description": self.description,
            "utility_str": self.utility_text,
        }
