"""``stop diff``: where two runs' lineages part.

Both causal trees are walked from their roots by (type, key) path, children in the first run's
log order (then the second run's extra ones). The first event whose comparable payload differs,
or that exists in only one run, is the divergence; both payloads are shown as a unified diff of
pretty JSON. Scheduling events and volatile fields (wall time, host facts) are left out, as in
replay. When a differing field holds blob addresses in both runs, the blobs' texts are diffed too.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from events.checkpoint_events import AUDIT_TYPES
from events.model import Event
from events.stop_events import SCHEDULING_TYPES
from replay.runs import load_run
from replay.tree import CausalTree, build_tree
from store.base import EventStore
from store.errors import StoreError

__all__ = ("DiffResult", "Divergence", "diff_runs", "diff_trees")

Path = tuple[tuple[str, str], ...]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Divergence:
    path: Path
    kind: str  # "payload" | "only_a" | "only_b"
    event_a: Event | None
    event_b: Event | None
    payload_diff: str
    blob_diffs: dict[str, str] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.path[-1][0]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": [{"type": t, "key": k} for t, k in self.path],
            "kind": self.kind,
            "type": self.type,
            "event_a": self.event_a.id if self.event_a else None,
            "event_b": self.event_b.id if self.event_b else None,
            "seq_a": self.event_a.seq if self.event_a else None,
            "seq_b": self.event_b.seq if self.event_b else None,
            "payload_a": _payload(self.event_a),
            "payload_b": _payload(self.event_b),
            "payload_diff": self.payload_diff,
            "blob_diffs": self.blob_diffs,
        }


@dataclass
class DiffResult:
    run_a: str
    run_b: str
    compared: int
    differences: int
    first: Divergence | None

    @property
    def same(self) -> bool:
        return self.first is None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "same": self.same,
            "compared": self.compared,
            "differences": self.differences,
            "first": self.first.to_json() if self.first else None,
        }

    def render(self) -> str:
        head = f"diff {self.run_a} .. {self.run_b}: {self.compared} events compared"
        if self.first is None:
            return head + "; the lineages do not part (no differing event)"
        d = self.first
        where = " / ".join(f"{t}[{k}]" for t, k in d.path)
        lines = [head + f", {self.differences} differing", f"first divergence ({d.kind}) at {where}"]
        lines.append(f"  a: {d.event_a.id + ' seq ' + str(d.event_a.seq) if d.event_a else '(absent)'}")
        lines.append(f"  b: {d.event_b.id + ' seq ' + str(d.event_b.seq) if d.event_b else '(absent)'}")
        lines.append(d.payload_diff.rstrip("\n"))
        for name, text in d.blob_diffs.items():
            lines.append(f"--- blob field {name} ---")
            lines.append(text.rstrip("\n"))
        return "\n".join(lines)


def _payload(ev: Event | None) -> dict[str, Any] | None:
    return None if ev is None else ev.comparable()["payload"]


def _pretty(ev: Event | None) -> list[str]:
    if ev is None:
        return []
    return (json.dumps(_payload(ev), indent=2, sort_keys=True, ensure_ascii=False) + "\n").splitlines(keepends=True)


def _sig(ev: Event) -> tuple[str, str]:
    return (ev.type, ev.key)


def _kids(tree: CausalTree, ev: Event) -> list[Event]:
    return [k for k in tree.children(ev) if k.type not in SCHEDULING_TYPES and k.type not in AUDIT_TYPES]


def diff_trees(a: CausalTree, b: CausalTree) -> tuple[int, list[tuple[Path, Event | None, Event | None]]]:
    """Depth-first walk of both trees; (compared, differences in walk order)."""
    out: list[tuple[Path, Event | None, Event | None]] = []
    compared = 0
    ra, rb = a.roots, b.roots
    stack: list[tuple[Path, Event | None, Event | None]] = []

    def pairs(xs: list[Event], ys: list[Event], base: Path) -> list[tuple[Path, Event | None, Event | None]]:
        by_b: dict[tuple[str, str], Event] = {}
        for y in ys:
            by_b.setdefault(_sig(y), y)
        res: list[tuple[Path, Event | None, Event | None]] = []
        seen: set[tuple[str, str]] = set()
        for x in xs:
            if _sig(x) in seen:
                continue
            seen.add(_sig(x))
            res.append(((*base, _sig(x)), x, by_b.get(_sig(x))))
        for y in ys:
            if _sig(y) not in seen:
                seen.add(_sig(y))
                res.append(((*base, _sig(y)), None, y))
        return res

    stack.extend(reversed(pairs(ra, rb, ())))
    while stack:
        path, x, y = stack.pop()
        compared += 1
        if x is None or y is None:
            out.append((path, x, y))
            continue
        if _payload(x) != _payload(y) or x.version != y.version:
            out.append((path, x, y))
        stack.extend(reversed(pairs(_kids(a, x), _kids(b, y), path)))
    return compared, out


async def _blob_text(store: EventStore, digest: str) -> list[str] | None:
    try:
        return (await store.get_blob(digest)).decode("utf-8", errors="replace").splitlines(keepends=True)
    except StoreError:
        return None


async def _blob_diffs(store_a: EventStore, store_b: EventStore, ea: Event, eb: Event) -> dict[str, str]:
    out: dict[str, str] = {}
    pa, pb = _payload(ea) or {}, _payload(eb) or {}
    for name in sorted(set(pa) | set(pb)):
        va, vb = pa.get(name), pb.get(name)
        if va == vb or not (isinstance(va, str) and isinstance(vb, str)):
            continue
        if not (_HEX64.match(va) and _HEX64.match(vb)):
            continue
        ta, tb = await _blob_text(store_a, va), await _blob_text(store_b, vb)
        if ta is None or tb is None:
            continue
        out[name] = "".join(difflib.unified_diff(ta, tb, fromfile=f"a/{va[:12]}", tofile=f"b/{vb[:12]}"))
    return out


async def diff_runs(store_a: EventStore, run_a: str, store_b: EventStore, run_b: str) -> DiffResult:
    """Compare two runs (possibly in two stores) and name the first event where they part."""
    ta = build_tree((await load_run(store_a, run_a)).events)
    tb = build_tree((await load_run(store_b, run_b)).events)
    compared, diffs = diff_trees(ta, tb)
    first: Divergence | None = None
    if diffs:
        path, x, y = diffs[0]
        kind = "only_b" if x is None else "only_a" if y is None else "payload"
        text = "".join(
            difflib.unified_diff(
                _pretty(x),
                _pretty(y),
                fromfile=f"a/{run_a[:12]}/{path[-1][0]}",
                tofile=f"b/{run_b[:12]}/{path[-1][0]}",
            )
        )
        first = Divergence(path, kind, x, y, text)
        if x is not None and y is not None:
            first.blob_diffs = await _blob_diffs(store_a, store_b, x, y)
    return DiffResult(run_a, run_b, compared, len(diffs), first)
