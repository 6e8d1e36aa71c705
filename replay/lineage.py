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
from events.stop_events import (
    GenerationStarted,
    ImproverDecided,
    LMRequested,
    RepairProblemStarted,
    RepairProgram,
    SessionCompleted,
    SessionRequested,
    UtilityEvaluated,
    UtilityRequested,
)
from events.types import RunStarted
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
    data = done.try_decode(SessionCompleted)
    if data is None:
        return "unreadable", f"event {done.id} does not decode as {SessionCompleted.TYPE}", None
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
        started = root.try_decode(RunStarted) if root is not None else None
        command = started.command if started is not None else ""
        self.lineage = Lineage(run_id=root.run_id if root else "", command=command)
        #: event id -> node id, for LM attribution (session requests, LM requests, ...)
        self.owner: dict[str, str] = {}

    def add(self, node: LineageNode) -> LineageNode:
        self.lineage.nodes.setdefault(node.id, node)
        return self.lineage.nodes[node.id]

    def evaluated(self, request: Event | None) -> Event | None:
        return self.tree.child(request, UtilityEvaluated.TYPE) if request is not None else None

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
        done = ev.try_decode(UtilityEvaluated) if ev is not None else None
        if done is None:
            return None, None
        return _num(done.utility), _num(done.detail.get("test"))

    # ---- stop self-improve -----------------------------------------------------------------
    def self_improve(self) -> None:
        """One pass per generation: the improver in force, its meta-utility, the candidates its
        generation session proposed, the improver it returned, and the adoption decision."""
        by_program: dict[str, str] = {}  # improver program -> node of the improver in force
        for gen, started in self._generations():
            g = started.generation
            current = self._improver_in_force(gen, started, by_program)
            self._generation_meta(gen, g, current)
            gen_programs: dict[str, str] = {}  # program -> node, for this generation's improvers
            session = self.tree.child(gen, SessionRequested.TYPE, "generation")
            if session is not None:
                self._proposed_candidates(session, g, current, gen_programs)
                self._returned_improver(session, g, current, gen_programs)
            decided = self.tree.child(gen, ImproverDecided.TYPE, "decision")
            if decided is not None:
                self._decision(decided, g, current, gen_programs, by_program)
        self.meta_run_solutions()

    def _generations(self) -> list[tuple[Event, GenerationStarted]]:
        typed = ((ev, ev.try_decode(GenerationStarted)) for ev in self.tree.of_type(GenerationStarted.TYPE))
        return sorted(((ev, g) for ev, g in typed if g is not None), key=lambda pair: pair[1].generation)

    def _improver_in_force(self, gen: Event, started: GenerationStarted, by_program: dict[str, str]) -> LineageNode:
        """The node of the improver a generation starts from (the seed at generation 0)."""
        current_id = by_program.get(started.improver)
        if current_id is not None:
            return self.lineage.nodes[current_id]
        g, parent = started.generation, started.parent
        node = self.add(
            LineageNode(
                id=gen.id,
                kind="improver",
                program=started.improver,
                parent=by_program.get(parent) if parent is not None else None,
                base=parent,
                generation=g,
                status="seed" if g == 0 else "",
                label="seed improver" if g == 0 else "improver",
            )
        )
        by_program[started.improver] = node.id
        return node

    def _generation_meta(self, gen: Event, g: int, current: LineageNode) -> None:
        """The meta-utility of the improver in force at generation ``g``."""
        val, test = self.meta_of(self.tree.child(gen, UtilityRequested.TYPE, "meta"))
        if current.val is None:
            current.val, current.test = val, test
        self.lineage.generations[g] = (
            val if val is not None else current.val,
            test if test is not None else current.test,
        )

    def _proposed_candidates(self, session: Event, g: int, current: LineageNode, gen_programs: dict[str, str]) -> None:
        """Every improver the generation session scored (its meta ``utility.requested``)."""
        for req in self.tree.children(session, UtilityRequested.TYPE):
            asked = req.try_decode(UtilityRequested)
            if asked is None or asked.task != "meta":
                continue
            prog = asked.solution
            if prog == current.program or prog in gen_programs:
                continue
            v, t = self.meta_of(req)
            node = self.add(
                LineageNode(
                    id=req.id,
                    kind="improver",
                    program=prog,
                    parent=current.id,
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

    def _returned_improver(self, session: Event, g: int, current: LineageNode, gen_programs: dict[str, str]) -> None:
        """The improver the generation session returned, or a failed-session node."""
        done = self.tree.child(session, SessionCompleted.TYPE, "result")
        if done is None:
            return
        ended = done.try_decode(SessionCompleted)
        prog = ended.solution if ended is not None else None
        if prog is None:
            self.failed_session(
                done,
                current.id,
                current.program,
                kind="improver",
                generation=g + 1,
                label="generation session (returned no improver)",
            )
            return
        node = self._improver_node(gen_programs, prog, done.id, current, g, "returned")
        node.status = "returned"
        v, t = self.meta_of(self.tree.child(done, UtilityRequested.TYPE, "meta"))
        node.val = v if v is not None else node.val
        node.test = t if t is not None else node.test
        self.owner[session.id] = node.id
        self.owner[done.id] = node.id

    def _improver_node(
        self, gen_programs: dict[str, str], program: str, node_id: str, current: LineageNode, g: int, label: str
    ) -> LineageNode:
        """The generation's node for ``program``: the one already made, or a new child of ``current``."""
        known = gen_programs.get(program)
        if known is None:
            known = self.add(
                LineageNode(
                    id=node_id,
                    kind="improver",
                    program=program,
                    parent=current.id,
                    base=current.program,
                    generation=g + 1,
                    label=label,
                )
            ).id
            gen_programs[program] = known
        return self.lineage.nodes[known]

    def _decision(
        self,
        decided_ev: Event,
        g: int,
        current: LineageNode,
        gen_programs: dict[str, str],
        by_program: dict[str, str],
    ) -> None:
        """Mark the decided candidate adopted or rejected; set the improver in force at ``g + 1``."""
        decided = decided_ev.try_decode(ImproverDecided)
        if decided is None:
            return
        adopted_node: LineageNode | None = None
        cand = decided.candidate
        if cand is not None:
            node = self._improver_node(gen_programs, cand, decided_ev.id, current, g, "candidate")
            node.adopted = decided.adopted
            node.status = "adopted" if node.adopted else "rejected"
            node.reason = decided.reason
            mv, mt = _num(decided.meta_val), _num(decided.meta_test)
            node.val = mv if mv is not None else node.val
            node.test = mt if mt is not None else node.test
            if node.adopted:
                by_program[cand] = node.id
                adopted_node = node
        # The improver in force once this generation is decided: the adopted candidate, or the
        # same improver again (so T generations plot as T + 1 points, as in STOP).
        if adopted_node is not None and adopted_node.val is not None:
            self.lineage.generations[g + 1] = (adopted_node.val, adopted_node.test)
        else:
            self.lineage.generations[g + 1] = self.lineage.generations[g]

    def meta_run_solutions(self) -> None:
        """Downstream solutions produced while an improver was scored by the meta-utility."""
        tree = self.tree
        nodes_by_program: dict[str, str] = {}
        for n in self.lineage.nodes.values():
            if n.kind == "improver" and n.program:
                nodes_by_program.setdefault(n.program, n.id)
        for sess in tree.of_type(SessionRequested.TYPE):
            asked = sess.try_decode(SessionRequested)
            if asked is None or asked.purpose != "meta_run":
                continue
            cause = tree.parent(sess)
            producer = None
            if cause is not None:
                scored = cause.try_decode(UtilityRequested)
                producer = self.owner.get(cause.id) or (nodes_by_program.get(scored.solution) if scored else None)
            producer = producer or nodes_by_program.get(asked.improver)
            done = tree.child(sess, SessionCompleted.TYPE, "result")
            ended = done.try_decode(SessionCompleted) if done is not None else None
            task = asked.utility_task or sess.key.split("/")[0]
            error_kind, error, trace = session_failure(done) if done is not None else ("", "", None)
            v, _ = self.meta_of(tree.child(done, UtilityRequested.TYPE, "val")) if done else (None, None)
            t, _ = self.meta_of(tree.child(done, UtilityRequested.TYPE, "test")) if done else (None, None)
            node = self.add(
                LineageNode(
                    id=(done or sess).id,
                    kind="solution",
                    program=ended.solution if ended is not None else None,
                    parent=producer,
                    base=asked.initial_solution,
                    generation=self.lineage.nodes[producer].generation if producer in self.lineage.nodes else None,
                    task=task,
                    status=(ended.status if ended is not None else "") if done else "unfinished",
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
        """The seed solution, what each improver session tried, and what it returned."""
        seed_id, seed_prog = self._seed_solution()
        for session in self.tree.children(self.root, SessionRequested.TYPE):
            asked = session.try_decode(SessionRequested)
            if asked is None:
                continue
            done = self.tree.child(session, SessionCompleted.TYPE, "result")
            ended = done.try_decode(SessionCompleted) if done is not None else None
            result = ended.solution if ended is not None else None
            seed_prog = seed_prog or asked.initial_solution
            self._tried_solutions(session, seed_id, seed_prog, result)
            if done is not None:
                node = self._session_result(done, result, asked.utility_task, seed_id, seed_prog)
                self.owner[session.id] = node.id

    def _seed_solution(self) -> tuple[str | None, str | None]:
        """(node id, program) of the solution the improvement starts from (its "before")."""
        before = self.tree.child(self.root, UtilityRequested.TYPE, "before/val")
        scored = before.try_decode(UtilityRequested) if before is not None else None
        if before is None or scored is None:
            return None, None
        v, _ = self.meta_of(before)
        t, _ = self.meta_of(self.tree.child(self.root, UtilityRequested.TYPE, "before/test"))
        node = self.add(
            LineageNode(
                id=before.id,
                kind="solution",
                program=scored.solution,
                parent=None,
                task=scored.task,
                status="seed",
                val=v,
                test=t,
                label="seed solution",
            )
        )
        return node.id, scored.solution

    def _session_result(
        self, done: Event, result: str | None, task: str, seed_id: str | None, seed_prog: str | None
    ) -> LineageNode:
        """The solution an improver session returned (its "after"), or why it returned none."""
        if result is None:
            # Nothing was returned: "after" is 0, whatever the improver tried on the way.
            return self.failed_session(
                done,
                seed_id,
                seed_prog,
                task=task,
                val=0.0,
                test=0.0,
                label="improver session failed: nothing returned",
            )
        v, _ = self.meta_of(self.tree.child(done, UtilityRequested.TYPE, "after/val"))
        t, _ = self.meta_of(self.tree.child(done, UtilityRequested.TYPE, "after/test"))
        return self.add(
            LineageNode(
                id=done.id,
                kind="solution",
                program=result,
                parent=seed_id,
                base=seed_prog,
                task=task,
                status="returned",
                val=v,
                test=t,
                label="improved solution",
            )
        )

    def _tried_solutions(self, session: Event, seed_id: str | None, seed_prog: str | None, result: str | None) -> None:
        """Solutions the improver scored on its way but did not return."""
        tried: dict[str, str] = {}
        for req in self.tree.children(session, UtilityRequested.TYPE):
            asked = req.try_decode(UtilityRequested)
            if asked is None:
                continue
            prog = asked.solution
            if prog == seed_prog or prog in tried or prog == result:
                continue
            v, _ = self.meta_of(req)
            tried[prog] = self.add(
                LineageNode(
                    id=req.id,
                    kind="solution",
                    program=prog,
                    parent=seed_id,
                    base=seed_prog,
                    task=asked.task,
                    status="tried",
                    val=v,
                    label="tried by the improver, not returned",
                )
            ).id

    # ---- stop repair -------------------------------------------------------------------------
    def repair(self) -> None:
        tree = self.tree
        problems: dict[str, str] = {}
        for prob in tree.of_type(RepairProblemStarted.TYPE):
            started = prob.try_decode(RepairProblemStarted)
            name = started.problem if started is not None else ""
            self.add(LineageNode(id=prob.id, kind="problem", program=None, parent=None, task=name, label=name))
            self.owner[prob.id] = prob.id
            problems[name] = prob.id
        for rp in tree.of_type(RepairProgram.TYPE):
            program = rp.try_decode(RepairProgram)
            if program is None:
                continue
            parent_ev = tree.by_id.get(program.parent) if program.parent is not None else None
            parent_program = parent_ev.try_decode(RepairProgram) if parent_ev is not None else None
            check = self.evaluated(tree.child(rp, UtilityRequested.TYPE, "check"))
            checked = check.try_decode(UtilityEvaluated) if check is not None else None
            util = _num(checked.utility) if checked is not None else None
            node = self.add(
                LineageNode(
                    id=rp.id,
                    kind="program",
                    program=program.program,
                    parent=program.parent if parent_ev is not None else problems.get(program.problem),
                    base=parent_program.program if parent_program is not None else None,
                    task=program.problem,
                    status="" if util is None else ("pass" if util >= 1.0 else "fail"),
                    val=util,
                    label=program.kind,
                )
            )
            for anc in tree.ancestors(rp):
                if anc.is_a(LMRequested):
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
                    asked = anc.try_decode(SessionRequested)
                    if target is None and asked is not None:
                        target = improver_by_program.get(asked.improver)
                    if target is not None:
                        break
            (nodes[target].lm if target in nodes else self.lineage.unattributed).add(call)


def lineage_from_tree(tree: CausalTree, calls: list[LMCall] | None = None) -> Lineage:
    """The lineage projection of one run's causal tree."""
    if calls is None:
        root = tree.root
        started = root.try_decode(RunStarted) if root is not None else None
        calls = lm_calls(tree, prices_from_config(started.config if started is not None else None))
    b = _Builder(tree, calls)
    if tree.of_type(GenerationStarted.TYPE):
        b.self_improve()
    elif tree.of_type(RepairProgram.TYPE) or tree.of_type(RepairProblemStarted.TYPE):
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
