"""A lineage node in full, for the node page: its program and diff, every evaluation of its
program (utility per split, per-instance outcomes) and the LM exchange that produced it.

"The exchange that produced it" is the LM calls of the session the node came out of: the
session that returned it, or the session in which a running improver proposed it (a candidate),
without the calls of sessions nested inside (a candidate's own meta-utility runs). The replies
holding the node's program text are marked. A repair program's exchange is the LM call it was
sampled from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from events.model import Event
from replay.costs import LMCall
from replay.lineage import LineageNode, node_diff
from replay.tree import CausalTree
from store.base import EventStore
from store.errors import StoreError

__all__ = ("Evaluation", "Exchange", "NodeDetails", "node_details", "producing_session")

#: Per-instance rows shown per evaluation (the rest are counted).
MAX_INSTANCES = 200


@dataclass
class Evaluation:
    task: str
    split: str
    event_id: str
    where: str
    utility: float | None
    detail: dict[str, Any]
    instances: list[dict[str, Any]] = field(default_factory=list)
    more_instances: int = 0
    #: a meta-utility's downstream runs (task, run, status, val, test), its per-instance outcomes
    runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    has_program: bool


@dataclass
class Exchange:
    event_id: str
    model: str
    outcome: str
    purpose: str
    messages: list[dict[str, str]]
    replies: list[Reply]
    error: str = ""


@dataclass
class NodeDetails:
    node: LineageNode
    program: str
    diff: str
    traceback: str | None
    evaluations: list[Evaluation]
    exchanges: list[Exchange]
    session: Event | None


class _Blobs:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.cache: dict[str, str] = {}

    async def text(self, digest: Any) -> str | None:
        if not isinstance(digest, str) or not digest:
            return None
        if digest not in self.cache:
            try:
                self.cache[digest] = (await self.store.get_blob(digest)).decode("utf-8", "replace")
            except StoreError as exc:
                self.cache[digest] = f"<<blob {digest} unavailable: {exc}>>"
        return self.cache[digest]


def producing_session(tree: CausalTree, node: LineageNode) -> Event | None:
    """The ``session.requested`` a node came out of (None: the seed, or not from a session)."""
    ev = tree.by_id.get(node.id)
    if ev is None:
        return None
    if ev.type == "session.requested":
        return ev
    if ev.type == "session.completed":
        return tree.parent(ev)
    if ev.type == "improver.decided":
        gen = tree.parent(ev)
        return tree.child(gen, "session.requested", "generation") if gen is not None else None
    if ev.type == "generation.started":
        return None
    return tree.nearest(ev, "session.requested")


def _session_calls(tree: CausalTree, session: Event) -> list[str]:
    """``lm.requested`` ids under a session, not descending into nested sessions."""
    out: list[str] = []
    stack = list(reversed(tree.children(session)))
    seen: set[str] = set()
    while stack:
        cur = stack.pop()
        if cur.id in seen:
            continue
        seen.add(cur.id)
        if cur.type == "lm.requested":
            out.append(cur.id)
        if cur.type == "session.requested":
            continue
        stack.extend(reversed(tree.children(cur)))
    return out


def _where(tree: CausalTree, ev: Event) -> str:
    parent = tree.parent(ev)
    place = f"{parent.type}[{parent.key}]" if parent is not None else "run"
    return f"{place} / {ev.key}"


async def _evaluations(tree: CausalTree, blobs: _Blobs, program: str) -> list[Evaluation]:
    out = []
    for req in tree.of_type("utility.requested"):
        if req.payload.get("solution") != program:
            continue
        res = tree.child(req, "utility.evaluated")
        p = res.payload if res is not None else {}
        utility = p.get("utility")
        detail = p.get("detail") if isinstance(p.get("detail"), Mapping) else {}
        ev = Evaluation(
            task=str(req.payload.get("task")),
            split=str(req.payload.get("split")),
            event_id=(res or req).id,
            where=_where(tree, req),
            utility=float(utility) if isinstance(utility, (int, float)) else None,
            detail=dict(detail or {}),
        )
        runs = ev.detail.get("runs")
        if isinstance(runs, list):
            ev.runs = [dict(r) for r in runs if isinstance(r, Mapping)]
        raw = await blobs.text(p.get("outcomes"))
        if raw is not None:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {}
            rows = parsed.get("instances") if isinstance(parsed, Mapping) else None
            if isinstance(rows, list):
                ev.instances = [dict(r) for r in rows[:MAX_INSTANCES] if isinstance(r, Mapping)]
                ev.more_instances = max(0, len(rows) - MAX_INSTANCES)
        out.append(ev)
    return out


async def _exchange(call: LMCall, blobs: _Blobs, program: str) -> Exchange:
    request = call.request.payload.get("request")
    messages = request.get("messages") if isinstance(request, Mapping) else None
    msgs = [
        {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
        for m in (messages or [])
        if isinstance(m, Mapping)
    ]
    replies = []
    error = ""
    if call.answer is not None and call.answer.type == "lm.failed":
        error = f"{call.answer.payload.get('kind')}: {call.answer.payload.get('error')}"
    elif call.answer is not None:
        for c in call.answer.payload.get("completions") or []:
            if not isinstance(c, Mapping):
                continue
            text = await blobs.text(c.get("text")) or ""
            replies.append(
                Reply(
                    text=text,
                    prompt_tokens=int(c.get("prompt_tokens") or 0),
                    completion_tokens=int(c.get("completion_tokens") or 0),
                    finish_reason=str(c.get("finish_reason") or ""),
                    has_program=bool(program.strip()) and program.strip() in text,
                )
            )
    return Exchange(
        event_id=call.request.id,
        model=call.model,
        outcome=call.outcome,
        purpose=str(call.request.payload.get("purpose", "")),
        messages=msgs,
        replies=replies,
        error=error,
    )


async def node_details(
    store: EventStore, tree: CausalTree, calls: list[LMCall], node: LineageNode, parent_program: str | None = None
) -> NodeDetails:
    blobs = _Blobs(store)
    program = await blobs.text(node.program) or ""
    base = parent_program if parent_program is not None else await blobs.text(node.base)
    diff = (
        node_diff(base, program, f"parent/{(node.base or 'none')[:12]}", f"{node.kind}/{node.program[:12]}")
        if node.program
        else ""
    )
    session = producing_session(tree, node)
    by_request = {c.request.id: c for c in calls}
    wanted: list[str] = []
    if session is not None:
        wanted = _session_calls(tree, session)
    else:
        ev = tree.by_id.get(node.id)
        lm = tree.nearest(ev, "lm.requested") if ev is not None else None
        wanted = [lm.id] if lm is not None else []
    exchanges = [await _exchange(by_request[i], blobs, program) for i in wanted if i in by_request]
    return NodeDetails(
        node=node,
        program=program,
        diff=diff,
        traceback=await blobs.text(node.traceback),
        evaluations=await _evaluations(tree, blobs, node.program) if node.program else [],
        exchanges=exchanges,
        session=session,
    )
