"""``stop lineage``: tree shape, statuses, meta-utilities, ``--show`` diff, JSON nodes/edges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inspect_cli import run_cli
from inspect_synth import C1, C2, C3, I0, S0, S1, S2, h, improve_run, repair_run, self_improve_run, write

from replay.lineage import UnknownNode, build_lineage, render_tree, show_node
from store import MemoryStore

pytestmark = pytest.mark.anyio


async def test_self_improve_tree_shape() -> None:
    """I0 -> {sol(I0), C1 (adopted) -> {sol(C1), C3 (rejected)}, C2 (proposed)}."""
    store = MemoryStore()
    await write(store, self_improve_run("run-a"))
    lin = await build_lineage(store, "run-a")
    by_prog = {(n.kind, n.program): n for n in lin.nodes.values()}
    i0, c1 = by_prog["improver", h(I0)], by_prog["improver", h(C1)]
    c2, c3 = by_prog["improver", h(C2)], by_prog["improver", h(C3)]
    s1, s2 = by_prog["solution", h(S1)], by_prog["solution", h(S2)]
    assert len(lin.nodes) == 6
    assert set(lin.edges) == {(i0.id, s1.id), (i0.id, c1.id), (i0.id, c2.id), (c1.id, s2.id), (c1.id, c3.id)}
    assert [r.id for r in lin.roots] == [i0.id]
    assert (i0.status, i0.generation, i0.val, i0.test) == ("seed", 0, 0.2, 0.25)
    assert (c1.status, c1.adopted, c1.generation, c1.val, c1.test) == ("adopted", True, 1, 0.4, 0.38)
    assert (c3.status, c3.adopted, c3.generation, c3.val) == ("rejected", False, 2, 0.3)
    assert (c2.status, c2.adopted, c2.val) == ("proposed", None, 0.1)
    assert (s2.task, s2.val, s2.test, s2.base) == ("parity_noise", 0.5, 0.45, h(S0))
    # generation 2 = the improver in force after generation 1 rejected C3: still C1
    assert lin.generations == {0: (0.2, 0.25), 1: (0.4, 0.38), 2: (0.4, 0.38)}
    text = render_tree(lin)
    assert text.count("\n") == 6 and "[ADOPTED]" in text and "[rejected]" in text
    assert f"├─ {c1.id[:10]}" in text and f"│  └─ {s2.id[:10]}" in text


async def test_show_prints_program_and_diff_against_parent() -> None:
    store = MemoryStore()
    await write(store, self_improve_run("run-a"))
    lin = await build_lineage(store, "run-a")
    node, text, diff = await show_node(store, lin, h(C3)[:8])  # a program-hash prefix
    assert text == C3 and node.base == h(C1)
    assert "-    for c in language_model.batch_prompt(initial_solution, n=2):" in diff
    assert "+    for c in language_model.batch_prompt(initial_solution, n=3):" in diff
    node2, _, _ = await show_node(store, lin, node.id[:12])  # a node-id prefix
    assert node2 is node
    with pytest.raises(UnknownNode):
        lin.find("zzzz")


async def test_improve_and_repair_lineages() -> None:
    store = MemoryStore()
    await write(store, improve_run("imp"))
    await write(store, repair_run("rep"))
    lin = await build_lineage(store, "imp")
    seed = lin.roots[0]
    assert seed.status == "seed" and seed.program == h(S0)
    kids = {n.program: n for n in lin.children(seed.id)}
    assert set(kids) == {h(S1), h(S2)}
    assert (kids[h(S2)].status, kids[h(S2)].val, kids[h(S2)].test) == ("returned", 0.6, 0.55)
    assert kids[h(S2)].lm.calls == 1 and kids[h(S1)].status == "tried"
    rep = await build_lineage(store, "rep")
    (problem,) = rep.roots
    (sample,) = rep.children(problem.id)
    (fix,) = rep.children(sample.id)
    assert (sample.status, fix.status, fix.base) == ("fail", "pass", h(S0))
    assert sample.lm.calls == 1 and rep.unattributed.calls == 0


def test_cli_lineage_json_and_show(synth_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["lineage", "run-a", "--store", str(synth_db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["nodes"]) == 6 and len(data["edges"]) == 5
    c1 = next(n for n in data["nodes"] if n["program"] == h(C1))
    assert c1["adopted"] is True and c1["lm"]["cost_usd"] == pytest.approx(1.0)
    assert run_cli(["lineage", "run-a", "--store", str(synth_db), "--show", h(C1)[:10]]) == 0
    out = capsys.readouterr().out
    assert C1 in out and "+    best = initial_solution" in out and "-    return initial_solution" in out
    assert run_cli(["lineage", "run-a", "--store", str(synth_db)]) == 0
    assert "lineage of run run-a (self-improve): 6 nodes" in capsys.readouterr().out
    assert run_cli(["lineage", "run-a", "--store", str(synth_db), "--show", "nothing"]) == 2
