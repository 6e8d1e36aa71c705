"""How a run ended, told truthfully: its ``status`` (see :class:`outcome.Status`) and its errors.

A run can record ``run.finished`` and still have failed at what it was asked: an improvement
whose improver session raised (its "after" utility is 0 because nothing was returned), a STOP
loop in which every generation failed. This module reads the log and says so. The status of
a run is decided, in order, by:

1. no final event: ``interrupted`` (the run can be resumed);
2. a run-level event named in :data:`RUN_LEVEL_STATUS` (e.g. ``budget.exhausted``, recorded when a
   spend cap stops a run): its status — adding such an event is one line there;
3. ``run.failed``: ``failed``;
4. the command's own judgement of its summary (:data:`JUDGES`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from events import Event
from events.lm_events import BudgetExhausted, BudgetRaised
from events.stop_events import GenerationStarted, LMFailed, SessionCompleted, SessionRequested
from events.types import RunFailed, RunFinished, RunStarted
from outcome import ExitCode, Status, exit_code_for
from store.base import EventStore

__all__ = ("JUDGES", "RUN_LEVEL_STATUS", "RunError", "RunOutcome", "run_outcome")

#: Run-level event types that decide a run's status when present (first in log order wins).
RUN_LEVEL_STATUS: dict[str, Status] = {BudgetExhausted.TYPE: Status.BUDGET_EXHAUSTED}

#: Sessions whose failure is the run's business (meta-utility runs are part of scoring).
_TOP_LEVEL_PURPOSES = frozenset({"improve", "generation"})


@dataclass(frozen=True)
class RunError:
    """One thing that went wrong, as ``--json`` shows it: {kind, message, event_id, ...}."""

    kind: str
    message: str
    event_id: str
    #: the improver's own traceback (text), for a failed session
    traceback: str | None = None
    #: what the failed work was: "improve", "generation 1", "lm", ...
    where: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "event_id": self.event_id,
            "traceback": self.traceback,
            "where": self.where,
        }

    def render(self) -> str:
        head = f"{self.where}: " if self.where else ""
        text = f"{head}{self.kind}: {_strip_kind(self.kind, self.message)}"
        if self.traceback:
            text += "\n" + "\n".join(f"    {line}" for line in self.traceback.rstrip("\n").splitlines())
        return text


def _strip_kind(kind: str, message: str) -> str:
    prefix = f"{kind}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


@dataclass(frozen=True)
class RunOutcome:
    status: Status
    #: one line saying why, when the status is not ``finished``
    reason: str = ""
    errors: list[RunError] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self.status)


Judge = Callable[[Mapping[str, Any], list[RunError]], str | None]


def _judge_improve(summary: Mapping[str, Any], errors: list[RunError]) -> str | None:
    if summary.get("solution") and summary.get("session_status") == "ok":
        return None
    why = next((e for e in errors if e.where == "improve"), None)
    detail = f"{why.kind}: {_strip_kind(why.kind, why.message)}" if why else summary.get("session_status")
    return f"the improvement failed: the improver session returned no solution ({detail}); utility after is 0"


def _judge_self_improve(summary: Mapping[str, Any], errors: list[RunError]) -> str | None:
    rows = [r for r in summary.get("generations") or [] if int(r.get("generation", 0)) >= 1]
    if rows and all(r.get("candidate") is None for r in rows):
        return f"every generation failed: none of the {len(rows)} improver session(s) returned an improver"
    return None


def _judge_transfer(summary: Mapping[str, Any], errors: list[RunError]) -> str | None:
    rows = summary.get("tasks") or []
    sessions = [r.get(k) for r in rows for k in ("seed_improver", "improved_improver")]
    if sessions and all(isinstance(s, Mapping) and "status" in s for s in sessions):
        return "every improver session failed"
    return None


#: command -> its judgement of a finished run's summary (None: it did what was asked).
JUDGES: dict[str, Judge] = {
    "improve": _judge_improve,
    "self-improve": _judge_self_improve,
    "transfer": _judge_transfer,
}


def _run_level_message(ev: Event) -> str:
    """The one line a run-level event gives for its status (its ``message``, ``reason`` or
    ``detail`` field, whichever its payload type has)."""
    data = ev.data
    for name in ("message", "reason", "detail"):
        value = getattr(data, name, None)
        if value:
            return str(value)
    return ev.type


async def _session_errors(store: EventStore, events: list[Event]) -> list[RunError]:
    by_id = {e.id: e for e in events}
    out: list[RunError] = []
    for ev in events:
        if ev.is_a(SessionCompleted):
            data = ev.decode(SessionCompleted)
            req = by_id.get(ev.causation_id or "")
            purpose = req.decode(SessionRequested).purpose if req is not None else ""
            if (data.status == "ok" and data.solution) or purpose not in _TOP_LEVEL_PURPOSES:
                continue
            where = purpose
            gen = by_id.get(req.causation_id or "") if req is not None else None
            if gen is not None and gen.is_a(GenerationStarted):
                where = f"generation {gen.decode(GenerationStarted).generation + 1}"
            trace = (await store.get_blob(data.traceback)).decode("utf-8", "replace") if data.traceback else None
            out.append(
                RunError(
                    kind=data.error_kind or data.status,
                    message=data.error or f"the session ended with {data.status}",
                    event_id=ev.id,
                    traceback=trace,
                    where=where,
                )
            )
        elif ev.is_a(LMFailed):
            failed = ev.decode(LMFailed)
            out.append(RunError(failed.kind or LMFailed.TYPE, failed.error, ev.id, where="lm"))
        elif ev.type in RUN_LEVEL_STATUS:
            out.append(RunError(ev.type, _run_level_message(ev), ev.id))
        elif ev.is_a(RunFailed):
            out.append(RunError(RunFailed.TYPE, ev.decode(RunFailed).error, ev.id))
    return out


async def run_outcome(store: EventStore, run_id: str, final: Event | None) -> RunOutcome:
    """The truthful outcome of a run from its log (``final``: its end event, None if it has none)."""
    events = await store.read(run_id)
    # a spend cap raised afterwards (``stop resume --max-cost-usd``) supersedes the stop at it
    raised_at = max((e.seq or 0 for e in events if e.is_a(BudgetRaised)), default=-1)
    superseded = {e.id for e in events if e.type in RUN_LEVEL_STATUS and (e.seq or 0) < raised_at}
    errors = [e for e in await _session_errors(store, events) if e.event_id not in superseded]
    if final is None:
        return RunOutcome(Status.INTERRUPTED, "interrupted before it ended; `stop resume` continues it", errors)
    for ev in events:
        status = RUN_LEVEL_STATUS.get(ev.type)
        if status is not None and ev.id not in superseded:
            why = next((e.message for e in errors if e.event_id == ev.id), ev.type)
            return RunOutcome(status, why, errors)
    if final.is_a(RunFailed):
        return RunOutcome(Status.FAILED, final.decode(RunFailed).error or "the run failed", errors)
    command = events[0].decode(RunStarted).command if events else ""
    judge = JUDGES.get(command)
    summary = final.decode(RunFinished).summary if final.is_a(RunFinished) else {}
    reason = judge(summary, errors) if judge is not None else None
    return RunOutcome(Status.FAILED if reason else Status.FINISHED, reason or "", errors)
