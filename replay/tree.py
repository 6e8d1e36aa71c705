"""The causal tree of one run: events indexed by id and by cause, as a projection (a fold).

Inspection walks runs by causation (``causation_id`` + ``key``), never by global sequence,
because concurrency can interleave agents differently from one run to the next.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from events.model import Event
from store.causation import ancestors_in
from store.projection import Projection, fold

__all__ = ("TREE", "CausalTree", "build_tree")


@dataclass
class CausalTree:
    events: list[Event] = field(default_factory=list)
    by_id: dict[str, Event] = field(default_factory=dict)
    kids: dict[str | None, list[Event]] = field(default_factory=dict)

    def add(self, ev: Event) -> CausalTree:
        self.events.append(ev)
        self.by_id[ev.id] = ev
        self.kids.setdefault(ev.causation_id, []).append(ev)
        return self

    # ---- navigation -------------------------------------------------------------------------
    @property
    def roots(self) -> list[Event]:
        """Events with no cause, or whose cause is not in this run (a truncated log)."""
        out = list(self.kids.get(None, []))
        out += [e for e in self.events if e.causation_id is not None and e.causation_id not in self.by_id]
        return out

    @property
    def root(self) -> Event | None:
        for ev in self.kids.get(None, []):
            if ev.type == "run.started":
                return ev
        roots = self.roots
        return roots[0] if roots else None

    def children(self, ev: Event | str | None, type_: str | None = None) -> list[Event]:
        key = ev.id if isinstance(ev, Event) else ev
        kids = self.kids.get(key, [])
        return kids if type_ is None else [k for k in kids if k.type == type_]

    def child(self, ev: Event | str | None, type_: str, key: str | None = None) -> Event | None:
        for k in self.children(ev, type_):
            if key is None or k.key == key:
                return k
        return None

    def parent(self, ev: Event) -> Event | None:
        return self.by_id.get(ev.causation_id) if ev.causation_id else None

    def ancestors(self, ev: Event) -> Iterator[Event]:
        """The causes of ``ev``, nearest first (cycle-safe on a tampered log)."""
        return ancestors_in(self.by_id, ev)

    def nearest(self, ev: Event, type_: str) -> Event | None:
        for a in self.ancestors(ev):
            if a.type == type_:
                return a
        return None

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]

    def descendants(self, ev: Event) -> Iterator[Event]:
        stack = list(reversed(self.children(ev)))
        seen: set[str] = set()
        while stack:
            cur = stack.pop()
            if cur.id in seen:
                continue
            seen.add(cur.id)
            yield cur
            stack.extend(reversed(self.children(cur)))


#: The tree as a projection, so it can be folded page by page from a store.
TREE: Projection[CausalTree] = Projection(CausalTree, CausalTree.add)


def build_tree(events: Iterable[Event]) -> CausalTree:
    return fold(events, TREE)
