"""What the walks of one meta-utility request have established so far (``agents.metautility``).

A downstream run's row is final once its session ended and both of its scores are answered (or
the session returned nothing): every fact it comes from is in the append-only log, so it never
changes, and a later walk only looks at the runs still pending. The requests a walk made sure
of are kept too, so walking a pending run again computes no event identities. A tally lives in
the run's view (``agents.run_view.RunView.meta_tallies``): a projection a fresh context rebuilds
from the log alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from events import Event

__all__ = ("MetaTally", "RunKey")

#: One downstream run of a meta-utility: (task, run index).
RunKey = tuple[str, int]


@dataclass
class MetaTally:
    rows: dict[RunKey, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[RunKey, Event] = field(default_factory=dict)
    #: The score requests of a finished session, by (run, split).
    scores: dict[tuple[RunKey, str], Event] = field(default_factory=dict)
