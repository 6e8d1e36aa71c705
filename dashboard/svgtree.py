"""The lineage tree drawn as inline SVG: one ``g.node`` per lineage node, shared by the dashboard
and ``stop report`` (so both look the same, and the report stays one self-contained file).

Layout: depth runs left to right (one column per generation step), leaves take one row each in
depth-first order (children in log order) and a parent sits midway between its first and last
child. Node fill is the node's val utility on a red-yellow-green scale (grey: not scored yet);
the adopted path (seed, then each adopted improver; the returned solution of ``stop improve``)
is drawn thick; a failed node gets a red ring, a cross and its error kind in its label, and
its full error in the tooltip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from itertools import pairwise

from replay.lineage import Lineage, LineageNode, walk

__all__ = ("on_adopted_path", "tree_svg", "utility_colour")

_COL = 210  # px per depth step
_ROW = 26  # px per leaf row
_R = 7  # node radius
_LEFT, _TOP = 16, 58  # margins (the legend sits above the tree)
_LABEL_CHARS = 30

#: (utility, rgb) stops of the fill scale
_STOPS = ((0.0, (215, 48, 39)), (0.5, (254, 224, 139)), (1.0, (26, 152, 80)))
_UNSCORED = "#cfcfcf"


def utility_colour(value: float | None) -> str:
    """The fill for a utility in [0, 1] (clamped); grey when there is none."""
    if value is None:
        return _UNSCORED
    v = min(1.0, max(0.0, value))
    for (a, ca), (b, cb) in pairwise(_STOPS):
        if v <= b:
            t = (v - a) / (b - a)
            r, g, bl = (round(x + (y - x) * t) for x, y in zip(ca, cb, strict=True))
            return f"#{r:02x}{g:02x}{bl:02x}"
    return "#{:02x}{:02x}{:02x}".format(*_STOPS[-1][1])


def on_adopted_path(lineage: Lineage, node: LineageNode) -> bool:
    """Whether ``node`` is on the path the run kept: the seed and every adopted improver, or
    the solution ``stop improve`` returned."""
    if node.status == "seed" or node.adopted:
        return True
    return lineage.command == "improve" and node.status == "returned"


@dataclass
class _Placed:
    node: LineageNode
    depth: int
    x: float
    y: float


def _layout(lineage: Lineage) -> list[_Placed]:
    order = list(walk(lineage))
    kids: dict[str, list[str]] = {}
    parent_of: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for depth, _last, node, _trail in order:
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            kids.setdefault(stack[-1][1], []).append(node.id)
            parent_of[node.id] = stack[-1][1]
        stack.append((depth, node.id))
    rows: dict[str, float] = {}
    next_row = 0
    # leaves in depth-first order get consecutive rows; parents are placed after their children
    for _depth, _last, node, _trail in order:
        if node.id not in kids:
            rows[node.id] = next_row
            next_row += 1
    for _depth, _last, node, _trail in sorted(order, key=lambda t: -t[0]):
        if node.id in kids:
            ks = [rows[k] for k in kids[node.id] if k in rows]
            rows[node.id] = (min(ks) + max(ks)) / 2 if ks else next_row
    return [
        _Placed(node, depth, _LEFT + _R + depth * _COL, _TOP + _R + rows[node.id] * _ROW)
        for depth, _last, node, _trail in order
    ]


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _label(node: LineageNode) -> str:
    bits = [node.id[:7]]
    if node.generation is not None:
        bits.append(f"g{node.generation}")
    if node.kind == "solution" and node.task:
        bits.append(node.task)
    elif node.label in ("candidate", "returned", "seed improver"):
        bits.append(node.label.split()[0])
    bits.append(_f(node.val))
    text = " ".join(bits)
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _tooltip(node: LineageNode) -> str:
    what = "meta-utility" if node.kind == "improver" else "utility"
    lines = [
        f"{node.kind} {node.id}" + (f" (generation {node.generation})" if node.generation is not None else ""),
        f"{node.label}" if node.label else "",
        f"{what}: val {_f(node.val)}, test {_f(node.test)}",
        f"status: {node.status}" + (f" ({node.reason})" if node.reason and not node.error_kind else ""),
    ]
    if node.program:
        lines.append(f"program {node.program[:16]}")
    if node.lm.calls:
        lines.append(f"LM {node.lm.calls} calls, {node.lm.tokens} tokens, ${node.lm.cost_usd:.4f}")
    if node.error_kind:
        lines.append(f"FAILED {node.error_kind}: {node.error[:400]}")
    return "\n".join(line for line in lines if line)


def _legend(width: int) -> str:
    stops = "".join(f'<stop offset="{v:.1f}" stop-color="{utility_colour(v)}"/>' for v in (0.0, 0.25, 0.5, 0.75, 1.0))
    return (
        f'<defs><linearGradient id="utility-scale">{stops}</linearGradient></defs>'
        '<g class="tree-legend">'
        '<text x="16" y="16" class="legend">utility (val)</text>'
        '<rect x="90" y="6" width="120" height="12" fill="url(#utility-scale)" stroke="#999"/>'
        '<text x="90" y="32" class="tick">0</text><text x="150" y="32" text-anchor="middle" class="tick">0.5</text>'
        '<text x="210" y="32" text-anchor="end" class="tick">1</text>'
        f'<circle cx="232" cy="12" r="{_R}" fill="{_UNSCORED}" stroke="#555"/>'
        '<text x="244" y="16" class="legend">not scored</text>'
        '<line x1="320" x2="350" y1="12" y2="12" class="edge adopted-path"/>'
        '<text x="356" y="16" class="legend">adopted path</text>'
        f'<circle cx="450" cy="12" r="{_R}" fill="#fff" class="failed-ring"/>'
        '<text x="450" y="16" text-anchor="middle" class="failed-mark">✕</text>'
        '<text x="462" y="16" class="legend">failed (error in label and tooltip)</text>'
        "</g>"
    )


def tree_svg(lineage: Lineage, href: Callable[[LineageNode], str | None]) -> str:
    """The tree as one ``<svg id="lineage-tree">``; ``href(node)`` links a node (None: no link)."""
    placed = _layout(lineage)
    if not placed:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" id="lineage-tree" class="tree" width="300" height="40">'
            '<text x="8" y="24" class="legend">no lineage nodes yet</text></svg>'
        )
    at = {p.node.id: p for p in placed}
    width = max(720, int(max(p.x for p in placed) + _COL + 20))
    height = int(max(p.y for p in placed) + _ROW)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="lineage-tree" class="tree" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="lineage tree, {len(placed)} nodes" data-nodes="{len(placed)}">',
        _legend(width),
        '<g class="edges">',
    ]
    for p in placed:
        parent = at.get(p.node.parent or "")
        if parent is None:
            continue
        adopted = on_adopted_path(lineage, p.node) and on_adopted_path(lineage, parent.node)
        mx = (parent.x + p.x) / 2
        out.append(
            f'<path class="edge{" adopted-path" if adopted else ""}" d="M{parent.x + _R:.1f},{parent.y:.1f} '
            f'C{mx:.1f},{parent.y:.1f} {mx:.1f},{p.y:.1f} {p.x - _R:.1f},{p.y:.1f}"/>'
        )
    out.append("</g>")
    for p in placed:
        n = p.node
        failed = bool(n.error_kind)
        classes = ["node", f"kind-{escape(n.kind)}"]
        if n.status:
            classes.append(f"status-{escape(n.status)}")
        if failed:
            classes.append("failed")
        if on_adopted_path(lineage, n):
            classes.append("on-path")
        link = href(n)
        circle = (
            f'<circle cx="{p.x:.1f}" cy="{p.y:.1f}" r="{_R + (2 if on_adopted_path(lineage, n) else 0)}" '
            f'fill="{utility_colour(n.val)}" class="dot{" failed-ring" if failed else ""}"/>'
        )
        mark = (
            f'<text x="{p.x:.1f}" y="{p.y + 4:.1f}" text-anchor="middle" class="failed-mark">✕</text>' if failed else ""
        )
        label = escape(_label(n))
        status = (
            f'<tspan class="tag-{escape(n.status)}"> {escape(n.status)}</tspan>'
            if n.status and n.status not in ("ok", "proposed")
            else ""
        )
        error = (
            f'<tspan class="node-error" x="{p.x + _R + 5:.1f}" dy="11">{escape(n.error_kind[:28])}</tspan>'
            if failed
            else ""
        )
        text = (
            f'<text x="{p.x + _R + 5:.1f}" y="{p.y + (0 if failed else 4):.1f}" class="node-label">'
            f"{label}{status}{error}</text>"
        )
        body = f"{circle}{mark}{text}"
        if link:
            body = f'<a href="{escape(link)}">{body}</a>'
        out.append(
            f'<g class="{" ".join(classes)}" data-node="{escape(n.id)}" data-kind="{escape(n.kind)}" '
            f'data-status="{escape(n.status)}"><title>{escape(_tooltip(n))}</title>{body}</g>'
        )
    out.append("</svg>")
    return "\n".join(out)
