"""Comparing a replayed run with its recording, by identity and causal structure.

Scheduling events (leases), live-only LM facts (``lm.endpoint``, spend caps), signed checkpoints
(present only when the recording had a key) and volatile fields (wall-clock times, host facts)
are left out.
The first divergence is the one no other divergence caused (walking up its causes), earliest
in the replay's own order; a run's end is reported only when nothing else differs.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from events import Event
from events.checkpoint_events import AUDIT_TYPES
from events.lm_events import LIVE_ONLY_TYPES
from events.routing import RUN_ENDS
from events.stop_events import SCHEDULING_TYPES
from store.causation import ancestors_in

__all__ = ("Comparison", "Divergence", "compare_runs")

_ENDS = RUN_ENDS


@dataclass(frozen=True)
class Divergence:
    event_id: str
    type: str
    kind: str  # "changed" | "new" | "missing"
    recorded: dict[str, Any] | None
    replayed: dict[str, Any] | None
    causes: list[str]

    def diff(self) -> str:
        a = json.dumps(self.recorded, indent=2, sort_keys=True).splitlines() if self.recorded else []
        b = json.dumps(self.replayed, indent=2, sort_keys=True).splitlines() if self.replayed else []
        return "\n".join(difflib.unified_diff(a, b, "recorded", "replayed", lineterm=""))

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "kind": self.kind,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "causes": self.causes,
        }


@dataclass
class Comparison:
    compared: int
    divergences: list[Divergence] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.divergences

    @property
    def first(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None


def _relevant(events: list[Event]) -> dict[str, Event]:
    return {
        e.id: e
        for e in events
        if e.type not in SCHEDULING_TYPES and e.type not in LIVE_ONLY_TYPES and e.type not in AUDIT_TYPES
    }


def _causes(ev: Event, index: dict[str, Event]) -> list[str]:
    chain = [f"{e.type}[{e.key}] {e.id[:12]}" for e in (ev, *ancestors_in(index, ev))]
    return chain[::-1]


def compare_runs(
    recorded: list[Event], replayed: list[Event], *, ignore_root: bool = False, prefix_only: bool = False
) -> Comparison:
    """``prefix_only`` (an unfinished recording): events the recording never reached are not
    divergences; only the recorded prefix is compared."""
    rec = _relevant(recorded)
    new = _relevant(replayed)
    if prefix_only:
        new = {eid: ev for eid, ev in new.items() if eid in rec}
    index = {**rec, **new}
    bad: dict[str, Divergence] = {}
    root_id = recorded[0].id if recorded else None
    for eid, ev in new.items():
        if ignore_root and eid == root_id:
            continue
        old = rec.get(eid)
        if old is None:
            bad[eid] = Divergence(eid, ev.type, "new", None, ev.comparable()["payload"], _causes(ev, index))
        elif old.comparable() != ev.comparable():
            bad[eid] = Divergence(
                eid, ev.type, "changed", old.comparable()["payload"], ev.comparable()["payload"], _causes(ev, index)
            )
    for eid, ev in rec.items():
        if eid not in new:
            bad[eid] = Divergence(eid, ev.type, "missing", ev.comparable()["payload"], None, _causes(ev, index))

    def caused_by_other(d: Divergence) -> bool:
        return any(up.id in bad for up in ancestors_in(index, index[d.event_id]))

    order_new = {e.id: i for i, e in enumerate(replayed)}
    order_rec = {e.id: i for i, e in enumerate(recorded)}

    def rank(d: Divergence) -> tuple[int, int, int]:
        end = 1 if d.type in _ENDS else 0
        if d.kind == "missing":
            return (end, 1, order_rec.get(d.event_id, 0))
        return (end, 0, order_new.get(d.event_id, 0))

    roots = sorted((d for d in bad.values() if not caused_by_other(d)), key=rank)
    rest = sorted((d for d in bad.values() if caused_by_other(d)), key=rank)
    return Comparison(compared=len(new), divergences=roots + rest)
