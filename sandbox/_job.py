"""What a job is (``Job``) and what came of it (``JobResult``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ._values import decode

__all__ = ("STATUSES", "Job", "JobResult", "LanguageModelProxy", "Status", "UtilityProxy")

Status = Literal[
    "ok",
    "error",
    "timeout",
    "call_timeout",
    "cpu_limit",
    "memory",
    "output_limit",
    "crashed",
    "invalid_output",
    "refused",
]
STATUSES: tuple[str, ...] = (
    "ok",
    "error",
    "timeout",
    "call_timeout",
    "cpu_limit",
    "memory",
    "output_limit",
    "crashed",
    "invalid_output",
    "refused",
)


@dataclass(frozen=True)
class UtilityProxy:
    """Placeholder in a session's args; becomes the guest's ``utility`` proxy."""

    description: str
    budget: int
    #: The visible utility's program text (``utility.str``); empty: the description.
    text: str = ""


@dataclass(frozen=True)
class LanguageModelProxy:
    """Placeholder in a session's args; becomes the guest's ``language_model`` proxy."""

    budget: int
    max_responses_per_call: int = 6


@dataclass(frozen=True)
class Job:
    """One program to run.

    ``call_timeout_s`` is timed in the guest around the function call only (the worker also
    kills the child shortly after it, so a program cannot disarm it); ``wall_timeout_s`` bounds
    the whole job and is enforced by the parent. ``cpu_s`` defaults to the wall timeout.
    Arguments may be any picklable host data (numpy arrays included); the host produced them.
    """

    program: str
    function: str | None = None
    args: tuple[Any, ...] | list[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    call_timeout_s: float | None = None
    wall_timeout_s: float = 10.0
    cpu_s: float | None = None
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    output_limit_bytes: int = 1 << 20
    capture_limit_bytes: int = 64 << 10
    result_limit_bytes: int = 8 << 20
    seed: int = 0

    def header(self) -> dict[str, Any]:
        """The limits as the worker receives them (the program travels in the payload)."""
        cpu = self.cpu_s if self.cpu_s is not None else self.wall_timeout_s
        return {
            "function": self.function,
            "call_timeout_s": self.call_timeout_s,
            "wall_timeout_s": float(self.wall_timeout_s),
            "cpu_s": float(cpu),
            "memory_mb": int(self.memory_mb),
            "file_size_mb": int(self.file_size_mb),
            "open_files": int(self.open_files),
            "output_limit_bytes": int(self.output_limit_bytes),
            "capture_limit_bytes": int(min(self.capture_limit_bytes, self.output_limit_bytes)),
            "result_limit_bytes": int(self.result_limit_bytes),
            "seed": int(self.seed),
        }


@dataclass(frozen=True)
class JobResult:
    """The outcome of one job; JSON-native fields so it can be stored in the event log.

    ``encoded_value`` keeps the guest's tagged JSON form (what ``to_json`` stores);
    ``value`` decodes it (numpy arrays for ``__ndarray__``, real NaN/inf for ``__float__``).
    """

    status: str
    encoded_value: Any = None
    error: str | None = None
    traceback: str | None = None
    call_time_s: float | None = None
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    max_rss_kb: int = 0
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    exit_code: int | None = None
    signal: str | None = None
    violations: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def value(self) -> Any:
        return decode(self.encoded_value)

    def to_json(self) -> dict[str, Any]:
        """The stored form. Shallow: the fields are JSON data already (``dataclasses.asdict``
        deep-copied every value, the host's largest CPU cost per instance in a paper-scale run)."""
        out = {name: getattr(self, name) for name in _RESULT_FIELDS}
        out["value"] = out.pop("encoded_value")
        out["violations"] = list(self.violations)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobResult:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["encoded_value"] = data.get("value")
        kwargs["violations"] = tuple(data.get("violations", ()))
        return cls(**kwargs)

    @classmethod
    def from_worker(cls, frame: dict[str, Any]) -> JobResult:
        """Build from a worker's ``done`` frame, checking every field's type."""
        status = frame.get("status")
        if status not in STATUSES:
            return cls(status="crashed", error=f"worker reported unknown status {status!r}")
        get = frame.get
        exit_code = get("exit_code")
        viols = get("violations")
        # Every field is set here, so the frozen dataclass's __init__ (a checked setattr per
        # field, half the cost of this method, once per instance of every batch) is skipped.
        result = object.__new__(cls)
        result.__dict__.update(
            status=str(status),
            encoded_value=get("value"),
            error=_opt_text(get("error")),
            traceback=_opt_text(get("traceback")),
            call_time_s=_opt_num(get("call_time_s")),
            wall_time_s=_num(get("wall_time_s")),
            cpu_time_s=_num(get("cpu_time_s")),
            max_rss_kb=int(_num(get("max_rss_kb"))),
            stdout=_text(get("stdout")),
            stderr=_text(get("stderr")),
            stdout_truncated=get("stdout_truncated") is True,
            stderr_truncated=get("stderr_truncated") is True,
            exit_code=exit_code if isinstance(exit_code, int) else None,
            signal=_opt_text(get("signal")),
            violations=tuple(str(v)[:200] for v in viols[:64]) if isinstance(viols, list) and viols else (),
        )
        return result


# The field checks of ``from_worker`` (module functions: closures made per call cost more than
# the checks).
def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else 0.0


def _opt_num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _text(x: Any) -> str:
    return x if isinstance(x, str) else ""


def _opt_text(x: Any) -> str | None:
    return x if isinstance(x, str) else None


_RESULT_FIELDS = tuple(f.name for f in fields(JobResult))
assert len(_RESULT_FIELDS) == 15, "JobResult.from_worker sets every field: add the new one there"
