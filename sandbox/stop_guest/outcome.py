"""What the worker reports for a job or a batch instance: the measured facts and the status.

Shared by the single-job watch (``worker``) and the batch watch (``batch``), so both describe a
child the same way: ``measured`` builds the facts the worker observed, ``classify`` turns what
it saw (its kill reason, the child's exit, the child's result frame) into a status, and
``parse`` reads one frame of the child's result channel.
"""

from __future__ import annotations

import json
import math
import signal
from typing import Any

#: Exit statuses -> signal names, computed once (``signal.Signals(n).name`` per frame cost more).
_SIGNAL_NAMES = {int(s): s.name for s in signal.Signals}


def signal_name(code: int) -> str | None:
    """The name of the signal that ended a child with ``code`` (a waitstatus exit code)."""
    return _SIGNAL_NAMES.get(-code) if code < 0 else None


def measured(
    *,
    wall: float,
    cpu: float,
    rss: int,
    code: int,
    captured: dict[str, bytearray],
    truncated: dict[str, bool],
    violations: list[str],
) -> dict[str, Any]:
    """The facts the worker measured for one job or instance (its frame, before the status)."""
    return {
        "wall_time_s": wall,
        "cpu_time_s": cpu,
        "max_rss_kb": rss,
        "exit_code": code if code >= 0 else None,
        "signal": signal_name(code),
        "stdout": captured["stdout"].decode("utf-8", "replace"),
        "stderr": captured["stderr"].decode("utf-8", "replace"),
        "stdout_truncated": truncated["stdout"],
        "stderr_truncated": truncated["stderr"],
        "violations": list(violations),
    }


def parse(raw: bytes) -> dict[str, Any] | None:
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return msg if isinstance(msg, dict) else None


def classify(
    kill_reason: str | None,
    detail: str | None,
    result: dict[str, Any] | None,
    code: int,
    cpu: float,
    cpu_limit: float,
    h: dict[str, Any],
) -> dict[str, Any]:
    """Turn what the worker saw into a status. Facts the worker measured win over the child's
    claims; the child's result frame only supplies the value, the call time and the error."""
    if kill_reason == "timeout":
        return {"status": "timeout", "error": f"wall-clock limit of {h['wall_timeout_s']} s"}
    if kill_reason == "call_timeout":
        return {"status": "call_timeout", "error": f"the call took longer than {h.get('call_timeout_s')} s"}
    if kill_reason == "output_limit":
        return {"status": "output_limit", "error": f"output exceeded {h['output_limit_bytes']} bytes"}
    if kill_reason == "invalid_output":
        return {"status": "invalid_output", "error": detail}
    cpu_rlimit = max(1, math.ceil(cpu_limit))
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu >= cpu_rlimit * 0.9):
        return {"status": "cpu_limit", "error": f"CPU limit of {cpu_limit} s"}
    if result is not None and code == 0:
        status = str(result.get("status"))
        fields: dict[str, Any] = {
            "call_time_s": _float_or_none(result.get("call_time_s")),
            "error": _str_or_none(result.get("error")),
            "traceback": _str_or_none(result.get("traceback")),
        }
        if status == "ok":
            try:
                fields["value"] = json.loads(str(result.get("value_json")), parse_constant=_no_constant)
            except (ValueError, RecursionError):
                return {"status": "invalid_output", "error": "the value is not valid JSON"}
            return {"status": "ok", **fields}
        if status == "error" and result.get("memory"):
            return {**fields, "status": "memory"}
        if status in ("error", "call_timeout", "invalid_output", "refused"):
            return {**fields, "status": status}
        return {"status": "crashed", "error": "the job sent an unknown result"}
    if result is not None and result.get("status") == "refused":
        return {"status": "refused", "error": _str_or_none(result.get("error"))}
    if code < 0:
        name = signal_name(code)
        return {"status": "crashed", "error": f"killed by {name}" if name else f"killed by signal {-code}"}
    return {"status": "crashed", "error": f"the job exited (code {code}) without a result"}


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (the runtime tags them); a value holding them is forged."""
    raise ValueError(f"{name} is not JSON")


def _float_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _str_or_none(x: Any) -> str | None:
    return None if x is None else str(x)[:10000]
