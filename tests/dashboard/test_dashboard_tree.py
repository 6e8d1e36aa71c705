"""The graphical lineage tree (shared by the dashboard and ``stop report``): layout, colour by
utility, the adopted path, failed nodes marked with their error."""

from __future__ import annotations

import re

from dashboard.svgtree import tree_svg, utility_colour
from replay.lineage import Lineage, LineageNode


def _lineage() -> Lineage:
    lin = Lineage(run_id="r", command="self-improve")
    nodes = [
        LineageNode("seed0", "improver", "p0", None, generation=0, status="seed", val=0.2),
        LineageNode("cand1", "improver", "p1", "seed0", generation=1, status="adopted", adopted=True, val=0.9),
        LineageNode("cand2", "improver", "p2", "seed0", generation=1, status="proposed", val=None),
        LineageNode(
            "fail1",
            "improver",
            None,
            "cand1",
            generation=2,
            status="failed",
            error_kind="ModuleNotFoundError",
            error="ModuleNotFoundError: No module named 'torch' <script>",
        ),
        LineageNode("sol1", "solution", "s1", "cand1", generation=1, task="parity_noise", status="ok", val=0.5),
    ]
    for n in nodes:
        lin.nodes[n.id] = n
    return lin


def test_tree_svg_marks_utility_path_and_failures() -> None:
    svg = tree_svg(_lineage(), lambda n: f"/node/{n.id}")
    groups = re.findall(r'<g class="(node [^"]*)" data-node="(\w+)"', svg)
    assert [g[1] for g in groups] == ["seed0", "cand1", "fail1", "sol1", "cand2"]  # depth first, log order
    classes = dict((node, cls) for cls, node in groups)
    assert "failed" in classes["fail1"] and "on-path" in classes["cand1"] and "on-path" not in classes["cand2"]
    # only seed -> adopted is on the adopted path
    assert svg.count('<path class="edge adopted-path"') == 1 and svg.count('<path class="edge"') == 3
    # the failure shows its kind in the label and its (escaped) message in the tooltip
    fail = svg[svg.index('data-node="fail1"') :].split("</g>")[0]
    assert "ModuleNotFoundError</tspan>" in fail and "&lt;script&gt;" in fail and "<script>" not in svg
    # colour by utility; unscored nodes grey; every node links
    assert f'fill="{utility_colour(0.9)}"' in svg and f'fill="{utility_colour(None)}"' in svg
    assert utility_colour(0.0) == "#d73027" and utility_colour(1.0) == "#1a9850" and utility_colour(2.0) == "#1a9850"
    assert svg.count('<a href="/node/') == 5
    # a parent sits between its first and last child
    ys = {n: float(y) for n, y in re.findall(r'data-node="(\w+)".*?<circle cx="[\d.]+" cy="([\d.]+)"', svg, re.S)}
    assert ys["fail1"] < ys["cand1"] < ys["sol1"]


def test_empty_lineage_draws_a_placeholder() -> None:
    svg = tree_svg(Lineage(run_id="r", command=""), lambda n: None)
    assert 'id="lineage-tree"' in svg and "no lineage nodes yet" in svg
