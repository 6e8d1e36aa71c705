"""``stop audit``'s check of signed checkpoints (what they are: ``events.checkpoint_events``).

The rule, in full:

1. every checkpoint's signature verifies under the key it names, over (run id, count, head,
   end); its fingerprint is that key's; it comes after the ``count`` events it signs, and the
   chain's ``count``-th event has hash ``head``;
2. every checkpoint of a run is signed by one key, and by the pinned key if one is given
   (``--public-key`` or ``STOP_SIGNING_KEY``): a forger who re-signs with a key of their own
   is caught by the pin; without one the audit names the key that signed;
3. a signed run must end with an end checkpoint (finished, failed, stopped at a spend cap, or
   interrupted) that is its last event and signs every event before it. A cut tail removes that
   checkpoint; ``end`` is inside the signature, so the last periodic checkpoint left cannot be
   turned into an end one. A run killed so hard it could not sign its end (``kill -9``, power
   loss) looks the same and fails too, until ``stop resume RUN`` signs its end;
4. with a pinned key, a run with no checkpoint at all fails (its checkpoints may have been
   stripped); without one it passes as "unsigned", like a run recorded without a key.

What no signature can show: a tail cut back to exactly an earlier end checkpoint (a run that
was interrupted, signed, then resumed) leaves a shorter run whose end is validly signed. The
audit says which end is signed and at which count; ``--head`` with a head kept elsewhere
catches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from events import Event
from events.checkpoint_events import CHECKPOINT, CheckpointSigned
from events.signing import checkpoint_message, fingerprint, parse_public_key, verify_signature

__all__ = ("RULE", "CheckpointProblem", "CheckpointReport", "verify_checkpoints")

#: One line for the audit's output: what "verified" means.
RULE = (
    "each signature and head must hold, one key signs them all (the pinned one if given), and the"
    " last checkpoint must sign the run's end and be its last event, so a cut tail is caught"
)


@dataclass(frozen=True)
class CheckpointProblem:
    event: str
    count: int | None
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "count": self.count, "problem": self.problem}


@dataclass
class CheckpointReport:
    #: checkpoint events found
    signed: int = 0
    #: of them, those whose signature and head hold
    verified: int = 0
    #: fingerprints of the keys that signed, in order of first use
    fingerprints: list[str] = field(default_factory=list)
    public_keys: list[str] = field(default_factory=list)
    #: the fingerprint the checkpoints must be signed by (None: not pinned)
    pinned: str | None = None
    #: the last end checkpoint: {event, count, end}
    end: dict[str, Any] | None = None
    #: events after the last checkpoint that no signature covers
    unsigned_tail: int = 0
    problems: list[CheckpointProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        if self.problems:
            return "broken"
        return "verified" if self.signed else "unsigned"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ok": self.ok,
            "signed": self.signed,
            "verified": self.verified,
            "fingerprints": self.fingerprints,
            "public_keys": self.public_keys,
            "pinned": self.pinned,
            "end": self.end,
            "unsigned_tail": self.unsigned_tail,
            "problems": [p.to_json() for p in self.problems],
            "rule": RULE,
        }

    def render_lines(self) -> list[str]:
        keys = ", ".join(self.fingerprints) or "-"
        pin = ", pinned" if self.pinned else ", not pinned: --public-key FILE would require it"
        if self.status == "unsigned":
            return [
                "checkpoints: unsigned (the run was recorded without STOP_SIGNING_KEY; without --head a"
                " recomputed chain or a cut tail cannot be told from an intact one)"
            ]
        if self.ok:
            assert self.end is not None
            lines = [
                f"OK     checkpoints: {self.signed} signed, verified (key fingerprint {keys}{pin});"
                f" the run's end ({self.end['end']}) is signed at {self.end['count']} events"
            ]
        else:
            lines = [
                f"BROKEN checkpoints: {self.signed} signed, {self.verified} verified,"
                f" {len(self.problems)} problem(s) (key fingerprint {keys}{pin if self.signed else ''})"
            ]
            lines += [
                f"BROKEN checkpoint{f' at {p.count}' if p.count is not None else ''}: {p.problem}"
                for p in self.problems
            ]
        lines.append(f"  rule: {RULE}")
        return lines


def _check_one(run_id: str, ev: Event, position: int, events: list[Event]) -> str | None:
    """Why one checkpoint (the ``position``-th event, 1-based) does not hold (None: it does)."""
    data = ev.decode(CheckpointSigned)
    if not verify_signature(
        data.public_key, data.signature, checkpoint_message(run_id, data.count, data.head, data.end)
    ):
        return "the signature does not verify (the checkpoint was edited or forged)"
    try:
        if fingerprint(parse_public_key(data.public_key)) != data.fingerprint:
            return f"fingerprint {data.fingerprint} is not that of the key it carries"
    except ValueError as exc:
        return f"its public key cannot be read: {exc}"
    if not 1 <= data.count < position:
        return f"it signs {data.count} events but is event {position} of the run"
    actual = events[data.count - 1].hash
    if actual != data.head:
        return (
            f"the chain's event {data.count} has hash {str(actual)[:16]}, the signed head is {data.head[:16]}"
            " (events before it were changed and the chain recomputed, or removed)"
        )
    return None


def verify_checkpoints(run_id: str, events: list[Event], pinned: str | None = None) -> CheckpointReport:
    """Check a run's checkpoints against its events (in log order) by the rule above;
    ``pinned``: the ``ed25519:<base64>`` key they must be signed by."""
    report = CheckpointReport(pinned=fingerprint(parse_public_key(pinned)) if pinned else None)
    last: tuple[int, CheckpointSigned] | None = None
    for position, ev in enumerate(events, 1):
        if ev.type != CHECKPOINT:
            continue
        data = ev.decode(CheckpointSigned)
        report.signed += 1
        if data.fingerprint not in report.fingerprints:
            report.fingerprints.append(data.fingerprint)
            report.public_keys.append(data.public_key)
        problem = _check_one(run_id, ev, position, events)
        if problem is None and report.pinned is not None and data.fingerprint != report.pinned:
            problem = f"signed by key {data.fingerprint}, not by the pinned key {report.pinned}"
        if problem is None:
            report.verified += 1
        else:
            report.problems.append(CheckpointProblem(ev.id, data.count, problem))
        if data.end:
            report.end = {"event": ev.id, "count": data.count, "end": data.end}
        last = (position, data)
    if len(report.fingerprints) > 1 and report.pinned is None:
        report.problems.append(
            CheckpointProblem(
                "", None, f"signed by {len(report.fingerprints)} different keys ({', '.join(report.fingerprints)})"
            )
        )
    if last is None:
        if report.pinned is not None:
            report.problems.append(
                CheckpointProblem(
                    "",
                    None,
                    f"no checkpoint signed by the pinned key {report.pinned}: the run was recorded without"
                    " a key, or its checkpoints were removed",
                )
            )
        return report
    position, data = last
    report.unsigned_tail = len(events) - position
    if not data.end:
        report.problems.append(
            CheckpointProblem(
                events[position - 1].id,
                data.count,
                f"the last checkpoint is periodic (it signs {data.count} of the run's {len(events)} events), not"
                " the run's end: the tail was cut, or the run was killed before it could sign its end"
                " (`stop resume RUN` signs it)",
            )
        )
    elif report.unsigned_tail:
        report.problems.append(
            CheckpointProblem(
                events[position - 1].id,
                data.count,
                f"{report.unsigned_tail} event(s) after the signed end ({data.end}) are unsigned (appended later)",
            )
        )
    elif data.count != position - 1:
        report.problems.append(
            CheckpointProblem(
                events[position - 1].id,
                data.count,
                f"the end checkpoint signs {data.count} events, not all {position - 1} before it",
            )
        )
    return report
