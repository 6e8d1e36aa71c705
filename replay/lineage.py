"""The lineage of a run: which improver (or solution, or repair program) produced which.

Nodes are introduced by events, so a node's id is the id of the event that introduced it:

- ``stop self-improve``: the seed improver (``generation.started`` of generation 0); every
  candidate improver a running improver proposed (its meta ``utility.requested``); the improver
  a generation session returned (its ``session.completed``), adopted or not per
  ``improver.decided``; and the downstream solutions each improver produced while it was scored
  (``session.completed`` of its ``meta_run`` sessions).
- ``stop improve``: the seed solution, the solutions the improver tried, and the one it returned.
- ``stop repair``: one root per problem and its sample/repair programs.

A node's cost is the LM usage of the work that produced it: the session that returned it, or
the LM calls a repair program was sampled from. Calls not tied to a node are "unattributed".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from events.model import Event
from events.stop_events import SessionCompleted
from outcome import UsageError
from replay.costs import LMCall, LMUsage, lm_calls, prices_from_config
from replay.runs import load_run
from replay.tree import CausalTree, build_tree
from store.base import EventStore

__all__ = (
    "UNATTRIBUTED",
    "Lineage",
    "LineageNode",
    "UnknownNode",
    "build_lineage",
    "lineage_from_tree",
    "node_diff",
    "render_tree",
    "show_node",
)

UNATTRIBUTED = "unattributed"


class UnknownNode(UsageError, LookupError):
    """No lineage node (or more than one distinct program) matches an id or hash prefix (exit 2)."""


@dataclass
class LineageNode:
    id: str
    kind: str  # improver | solution | program | problem
    program: str | None  # blob address of the program text
    parent: str | None  # parent node id
    base: str | None = None  # blob the program is diffed against (its parent's program)
    generation: int | None = None
    task: str | None = None
    status: str = ""  # seed | proposed | returned | adopted | rejected | pass | fail | ...
    adopted: bool | None = None
    reason: str = ""
    val: float | None = None  # meta-utility (improvers) or task utility (solutions), val split
    test: float | None = None
    lm: LMUsage = field(default_factory=LMUsage)
    label: str = ""
    #: a failed improver session: its error kind ("ModuleNotFoundError", "timeout", ...),
    #: its message, and the blob of the improver's traceback (see ``session.completed``)
    error_kind: str = ""
    error: str = ""
    traceback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "program": self.program,
            "parent": self.parent,
            "base": self.base,
            "generation": self.generation,
            "task": self.task,
            "status": self.status,
            "adopted": self.adopted,
            "reason": self.reason,
            "val": self.val,
            "test": self.test,
            "label": self.label,
            "lm": self.lm.to_json(),
            "error": {"kind": self.error_kind, "message": self.error, "traceback": self.traceback}
            if self.error_kind
            else None,
        }


@dataclass
class Lineage:
    run_id: str
    command: str
    nodes: dict[str, LineageNode] = field(default_factory=dict)
    unattributed: LMUsage = field(default_factory=LMUsage)
    #: generation -> (meta val, meta test) of the improver in force at that generation
    generations: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(n.parent, n.id) for n in self.nodes.values() if n.parent is not None]

    def children(self, node_id: str | None) -> list[LineageNode]:
        return [n for n in self.nodes.values() if n.parent == node_id]

    @property
    def roots(self) -> list[LineageNode]:
        return [n for n in self.nodes.values() if n.parent is None or n.parent not in self.nodes]

    def find(self, ident: str) -> LineageNode:
        """A node by id prefix or program-hash prefix (several nodes sharing one program: the first)."""
        ident = ident.strip().lower()
        if not ident:
            raise UnknownNode("empty node id")
        by_id = [n for n in self.nodes.values() if n.id.startswith(ident)]
        if len(by_id) == 1:
            return by_id[0]
        by_prog = [n for n in self.nodes.values() if n.program and n.program.startswith(ident)]
        programs = {n.program for n in by_prog}
        if len(programs) == 1 and not by_id:
            return by_prog[0]
        if by_id or by_prog:
            raise UnknownNode(f"{ident!r} is ambiguous ({len(by_id)} node ids, {len(programs)} programs)")
        raise UnknownNode(f"no lineage node or program hash starts with {ident!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "command": self.command,
            "nodes": [n.to_json() for n in self.nodes.values()],
            "edges": [{"parent": p, "child": c} for p, c in self.edges],
            "generations": [
                {"generation": g, "meta_val": v, "meta_test": t} for g, (v, t) in sorted(self.generations.items())
            ],
            "unattributed_lm": self.unattributed.to_json(),
        }


def session_failure(done: Event) -> tuple[str, str, str | None]:
    """(error kind, message, traceback blob) of a ``session.completed`` (kind "" if it succeeded)."""
    data = done.data
    assert isinstance(data, SessionCompleted)
    if data.status == "ok" and data.solution:
        return "", "", None
    return data.error_kind or data.status, data.error or f"the session ended with {data.status}", data.traceback


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Builder:
    def __init__(self, tree: CausalTree, calls: list[LMCall]) -> None:
        self.tree = tree
        self.calls = calls
        root = tree.root
        self.root = root
        command = str(root.payload.get("command", "")) if root is not None and root.type == "run.started" else ""
        self.lineage = Lineage(run_id=root.run_id if root else "", command=command)
        #: event id -> node id, for LM attribution (session requests, LM requests, ...)
        self.owner: dict[str, str] = {}

    def add(self, node: LineageNode) -> LineageNode:
        self.lineage.nodes.setdefault(node.id, node)
        return self.lineage.nodes[node.id]

    def evaluated(self, request: Event | None) -> Event | None:
        return self.tree.child(request, "utility.evaluated") if request is not None else None

    def failed_session(self, done: Event, parent: str | None, base: str | None, **fields: Any) -> LineageNode:
        """A node for an improver session that returned nothing: what it was, and why it failed."""
        kind, message, trace = session_failure(done)
        return self.add(
            LineageNode(
                id=done.id,
                kind=fields.pop("kind", "solution"),
                program=None,
                parent=parent,
                base=base,
                status="failed",
                error_kind=kind,
                error=message,
                traceback=trace,
                **fields,
            )
        )

    def meta_of(self, request: Event | None) -> tuple[float | None, float | None]:
        ev = self.evaluated(request)
        if ev is None:
            return None, None
        detail = ev.payload.get("detail") or {}
        return _num(ev.payload.get("utility")), _num(detail.get("test") if isinstance(detail, dict) else None)

    # ---- stop self-improve -----------------------------------------------------------------
    def self_improve(self) -> None:
        tree = self.tree
        gens = sorted(tree.of_type("generation.started"), key=lambda e: int(e.payload.get("generation", 0)))
        by_program: dict[str, str] = {}
        for gen in gens:
            g = int(gen.payload.get("generation", 0))
            improver = gen.payload.get("improver")
            current_id = by_program.get(improver) if isinstance(improver, str) else None
            if current_id is None:
                parent_prog = gen.payload.get("parent")
                node = self.add(
                    LineageNode(
                        id=gen.id,
                        kind="improver",
                        program=improver,
                        parent=by_program.get(parent_prog) if isinstance(parent_prog, str) else None,
                        base=parent_prog if isinstance(parent_prog, str) else None,
                        generation=g,
                        status="seed" if g == 0 else "",
                        label="seed improver" if g == 0 else "improver",
                    )
                )
                current_id = node.id
                if isinstance(improver, str):
                    by_program[improver] = current_id
            current = self.lineage.nodes[current_id]
            val, test = self.meta_of(tree.child(gen, "utility.requested", "meta"))
            if current.val is None:
                current.val, current.test = val, test
            self.lineage.generations[g] = (
                val if val is not None else current.val,
                test if test is not None else current.test,
            )
            session = tree.child(gen, "session.requested", "generation")
            gen_programs: dict[str, str] = {}
            if session is not None:
                for req in tree.children(session, "utility.requested"):
                    prog = req.payload.get("solution")
                    if req.payload.get("task") != "meta" or not isinstance(prog, str):
                        continue
                    if prog == current.program or prog in gen_programs:
                        continue
                    v, t = self.meta_of(req)
                    node = self.add(
                        LineageNode(
                            id=req.id,
                            kind="improver",
                            program=prog,
                            parent=current_id,
                            base=current.program,
                            generation=g + 1,
                            status="proposed",
                            val=v,
                            test=t,
                            label="candidate",
                        )
                    )
                    gen_programs[prog] = node.id
                    self.owner[req.id] = node.id
                done = tree.child(session, "session.completed", "result")
                if done is not None:
                    prog = done.payload.get("solution")
                    if isinstance(prog, str):
                        node_id = gen_programs.get(prog)
                        if node_id is None:
                            node = self.add(
                                LineageNode(
                                    id=done.id,
                                    kind="improver",
                                    program=prog,
                                    parent=current_id,
                                    base=current.program,
                                    generation=g + 1,
                                    label="returned",
                                )
                            )
                            node_id = node.id
                            gen_programs[prog] = node_id
                        node = self.lineage.nodes[node_id]
                        node.status = "returned"
                        v, t = self.meta_of(tree.child(done, "utility.requested", "meta"))
                        node.val = v if v is not None else node.val
                        node.test = t if t is not None else node.test
                        self.owner[session.id] = node_id
                        self.owner[done.id] = node_id
                    else:
                        self.failed_session(
                            done,
                            current_id,
                            current.program,
                            kind="improver",
                            generation=g + 1,
                            label="generation session (returned no improver)",
                        )
            decided = tree.child(gen, "improver.decided", "decision")
            if decided is not None:
                cand = decided.payload.get("candidate")
                adopted_node: LineageNode | None = None
                if isinstance(cand, str):
                    node_id = gen_programs.get(cand)
                    if node_id is None:
                        node_id = self.add(
                            LineageNode(
                                id=decided.id,
                                kind="improver",
                                program=cand,
                                parent=current_id,
                                base=current.program,
                                generation=g + 1,
                                label="candidate",
                            )
                        ).id
                        gen_programs[cand] = node_id
                    node = self.lineage.nodes[node_id]
                    node.adopted = bool(decided.payload.get("adopted"))
                    node.status = "adopted" if node.adopted else "rejected"
                    node.reason = str(decided.payload.get("reason", ""))
                    mv, mt = _num(decided.payload.get("meta_val")), _num(decided.payload.get("meta_test"))
                    node.val = mv if mv is not None else node.val
                    node.test = mt if mt is not None else node.test
                    if node.adopted:
                        by_program[cand] = node_id
                        adopted_node = node
                # The improver in force once this generation is decided: the adopted candidate,
                # or the same improver again (so T generations plot as T + 1 points, as in STOP).
                if adopted_node is not None and adopted_node.val is not None:
                    self.lineage.generations[g + 1] = (adopted_node.val, adopted_node.test)
                else:
                    self.lineage.generations[g + 1] = self.lineage.generations[g]
        self.meta_run_solutions()

    def meta_run_solutions(self) -> None:
        """Downstream solutions produced while an improver was scored by the meta-utility."""
        tree = self.tree
        nodes_by_program: dict[str, str] = {}
        for n in self.lineage.nodes.values():
            if n.kind == "improver" and n.program:
                nodes_by_program.setdefault(n.program, n.id)
        for sess in tree.of_type("session.requested"):
            if sess.payload.get("purpose") != "meta_run":
                continue
            cause = tree.parent(sess)
            producer = None
            if cause is not None:
                producer = self.owner.get(cause.id) or nodes_by_program.get(cause.payload.get("solution", ""))
            producer = producer or nodes_by_program.get(sess.payload.get("improver", ""))
            done = tree.child(sess, "session.completed", "result")
            task = str(sess.payload.get("utility_task") or sess.key.split("/")[0])
            prog = done.payload.get("solution") if done is not None else None
            error_kind, error, trace = session_failure(done) if done is not None else ("", "", None)
            v, _ = self.meta_of(tree.child(done, "utility.requested", "val")) if done else (None, None)
            t, _ = self.meta_of(tree.child(done, "utility.requested", "test")) if done else (None, None)
            node = self.add(
                LineageNode(
                    id=(done or sess).id,
                    kind="solution",
                    program=prog if isinstance(prog, str) else None,
                    parent=producer,
                    base=sess.payload.get("initial_solution"),
                    generation=self.lineage.nodes[producer].generation if producer in self.lineage.nodes else None,
                    task=task,
                    status=str(done.payload.get("status", "")) if done else "unfinished",
                    val=v,
                    test=t,
                    label=f"{task} run {sess.key.split('/')[-1]}",
                    reason=error,
                    error_kind=error_kind,
                    error=error,
                    traceback=trace,
                )
            )
            self.owner[sess.id] = node.id

    # ---- stop improve ------------------------------------------------------------------------
    def improve(self) -> None:
        tree, root = self.tree, self.root
        before = tree.child(root, "utility.requested", "before/val")
        seed_id: str | None = None
        seed_prog: str | None = None
        if before is not None:
            seed_prog = before.payload.get("solution")
            v, _ = self.meta_of(before)
            t, _ = self.meta_of(tree.child(root, "utility.requested", "before/test"))
            task = str(before.payload.get("task"))
            seed_id = self.add(
                LineageNode(
                    id=before.id,
                    kind="solution",
                    program=seed_prog,
                    parent=None,
                    task=task,
                    status="seed",
                    val=v,
                    test=t,
                    label="seed solution",
                )
            ).id
        for session in tree.children(root, "session.requested"):
            done = tree.child(session, "session.completed", "result")
            result = done.payload.get("solution") if done is not None else None
            seed_prog = seed_prog or session.payload.get("initial_solution")
            tried: dict[str, str] = {}
            for req in tree.children(session, "utility.requested"):
                prog = req.payload.get("solution")
                if not isinstance(prog, str) or prog == seed_prog or prog in tried or prog == result:
                    continue
                v, _ = self.meta_of(req)
                tried[prog] = self.add(
                    LineageNode(
                        id=req.id,
                        kind="solution",
                        program=prog,
                        parent=seed_id,
                        base=seed_prog,
                        task=str(req.payload.get("task")),
                        status="tried",
                        val=v,
                        label="tried by the improver, not returned",
                    )
                ).id
            if done is not None and isinstance(result, str):
                v, _ = self.meta_of(tree.child(done, "utility.requested", "after/val"))
                t, _ = self.meta_of(tree.child(done, "utility.requested", "after/test"))
                node = self.add(
                    LineageNode(
                        id=done.id,
                        kind="solution",
                        program=result,
                        parent=seed_id,
                        base=seed_prog,
                        task=str(session.payload.get("utility_task")),
                        status="returned",
                        val=v,
                        test=t,
                        label="improved solution",
                    )
                )
                self.owner[session.id] = node.id
            elif done is not None:
                # Nothing was returned: "after" is 0, whatever the improver tried on the way.
                node = self.failed_session(
                    done,
                    seed_id,
                    seed_prog,
                    task=str(session.payload.get("utility_task")),
                    val=0.0,
                    test=0.0,
                    label="improver session failed: nothing returned",
                )
                self.owner[session.id] = node.id

    # ---- stop repair -------------------------------------------------------------------------
    def repair(self) -> None:
        tree = self.tree
        for prob in tree.of_type("repair.problem"):
            self.add(
                LineageNode(
                    id=prob.id,
                    kind="problem",
                    program=None,
                    parent=None,
                    task=str(prob.payload.get("problem")),
                    label=str(prob.payload.get("problem")),
                )
            )
            self.owner[prob.id] = prob.id
        problems = {str(p.payload.get("problem")): p.id for p in tree.of_type("repair.problem")}
        for rp in tree.of_type("repair.program"):
            parent_id = rp.payload.get("parent")
            parent_ev = tree.by_id.get(parent_id) if isinstance(parent_id, str) else None
            check = self.evaluated(tree.child(rp, "utility.requested", "check"))
            util = _num(check.payload.get("utility")) if check is not None else None
            problem = str(rp.payload.get("problem"))
            node = self.add(
                LineageNode(
                    id=rp.id,
                    kind="program",
                    program=rp.payload.get("program"),
                    parent=parent_id if parent_ev is not None else problems.get(problem),
                    base=parent_ev.payload.get("program") if parent_ev is not None else None,
                    task=problem,
                    status="" if util is None else ("pass" if util >= 1.0 else "fail"),
                    val=util,
                    label=str(rp.payload.get("kind", "program")),
                )
            )
            for anc in tree.ancestors(rp):
                if anc.type == "lm.requested":
                    self.owner.setdefault(anc.id, node.id)
                    break

    # ---- LM cost attribution -----------------------------------------------------------------
    def attribute(self) -> None:
        nodes = self.lineage.nodes
        improver_by_program = {n.program: n.id for n in nodes.values() if n.kind == "improver" and n.program}
        for call in self.calls:
            target = self.owner.get(call.request.id)
            if target is None:
                for anc in self.tree.ancestors(call.request):
                    target = self.owner.get(anc.id)
                    if target is None and anc.type == "session.requested":
                        target = improver_by_program.get(anc.payload.get("improver", ""))
                    if target is not None:
                        break
            (nodes[target].lm if target in nodes else self.lineage.unattributed).add(call)


def lineage_from_tree(tree: CausalTree, calls: list[LMCall] | None = None) -> Lineage:
    """The lineage projection of one run's causal tree."""
    if calls is None:
        root = tree.root
        config = root.payload.get("config") if root is not None else None
        calls = lm_calls(tree, prices_from_config(config if isinstance(config, dict) else None))
    b = _Builder(tree, calls)
    if tree.of_type("generation.started"):
        b.self_improve()
    elif tree.of_type("repair.program") or tree.of_type("repair.problem"):
        b.repair()
    else:
        b.improve()
    b.attribute()
    return b.lineage


async def build_lineage(store: EventStore, run_id: str) -> Lineage:
    return lineage_from_tree(build_tree((await load_run(store, run_id)).events))


# ---- rendering ------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def describe(node: LineageNode) -> str:
    bits = [f"{node.id[:10]}", node.kind]
    if node.generation is not None:
        bits.append(f"g{node.generation}")
    if node.task:
        bits.append(node.task)
    if node.label and node.label not in (node.kind, node.task):
        bits.append(f"({node.label})")
    name = "meta" if node.kind == "improver" else "utility"
    bits.append(f"{name} val {_fmt(node.val)} test {_fmt(node.test)}")
    if node.program:
        bits.append(f"prog {node.program[:10]}")
    if node.lm.calls:
        bits.append(f"lm {node.lm.calls} calls {node.lm.tokens} tok ${node.lm.cost_usd:.4f}")
    if node.status:
        bits.append(f"[{node.status.upper() if node.adopted else node.status}]")
    if node.error_kind:
        bits.append(f"error: {node.error.splitlines()[0][:160] if node.error else node.error_kind}")
    return "  ".join(bits)


def walk(lineage: Lineage) -> Iterable[tuple[int, bool, LineageNode, list[bool]]]:
    """Depth-first (depth, is_last, node, ancestors_last) over the tree, children in log order."""

    def rec(
        node: LineageNode, depth: int, last: bool, trail: list[bool], seen: set[str]
    ) -> Iterable[tuple[int, bool, LineageNode, list[bool]]]:
        if node.id in seen:
            return
        seen.add(node.id)
        yield depth, last, node, trail
        kids = lineage.children(node.id)
        for i, kid in enumerate(kids):
            yield from rec(kid, depth + 1, i == len(kids) - 1, [*trail, last], seen)

    seen: set[str] = set()
    roots = lineage.roots
    for i, r in enumerate(roots):
        yield from rec(r, 0, i == len(roots) - 1, [], seen)


def render_tree(lineage: Lineage) -> str:
    lines = [f"lineage of run {lineage.run_id} ({lineage.command or 'run'}): {len(lineage.nodes)} nodes"]
    for depth, last, node, trail in walk(lineage):
        if depth == 0:
            prefix = ""
        else:
            prefix = "".join("   " if t else "│  " for t in trail[1:]) + ("└─ " if last else "├─ ")
        lines.append(prefix + describe(node))
    if lineage.unattributed.calls:
        u = lineage.unattributed
        lines.append(f"(LM calls not tied to a node: {u.calls}, {u.tokens} tokens, ${u.cost_usd:.4f})")
    return "\n".join(lines)


async def _text(store: EventStore, digest: str | None) -> str | None:
    if not digest:
        return None
    return (await store.get_blob(digest)).decode("utf-8", errors="replace")


def node_diff(base: str | None, text: str, base_name: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            (base or "").splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=base_name,
            tofile=name,
        )
    )


async def show_node(store: EventStore, lineage: Lineage, ident: str) -> tuple[LineageNode, str, str]:
    """(node, program text, unified diff against its parent's program)."""
    node = lineage.find(ident)
    if not node.program:
        return node, "", ""  # a failed session returned no program
    text = await _text(store, node.program) or ""
    base = await _text(store, node.base)
    diff = node_diff(
        base,
        text,
        f"parent/{(node.base or 'none')[:12]}",
        f"{node.kind}/{(node.program or 'none')[:12]}",
    )
    return node, text, diff
