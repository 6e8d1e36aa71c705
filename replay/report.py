"""``stop report``: one self-contained HTML file for a run.

Inline CSS, a few lines of inline JS and inline SVG only: the file opens offline, from a mail
attachment or a CI artefact, and fetches nothing at view time. Sections: the audit summary,
meta-utility per generation (plot), the lineage tree, per-task utilities, LM costs, violations,
and every program with its unified diff against its parent.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Any

import anyio

from replay.audit import AuditReport, audit_log, check_blobs
from replay.lineage import Lineage, LineageNode, lineage_from_tree, node_diff, walk
from replay.runs import load_run
from replay.svgplot import Series, line_plot
from replay.tree import build_tree
from store.base import EventStore
from store.errors import StoreError

__all__ = ("render_report", "write_report")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.muted{color:#777} .ok{color:#18794e;font-weight:600} .bad{color:#c0392b;font-weight:600}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f5f5f5} td.l,th.l{text-align:left}
ul.tree,ul.tree ul{list-style:none;margin:0;padding-left:20px} ul.tree{padding-left:0}
ul.tree li{position:relative;padding:2px 0} ul.tree ul li::before{content:"";position:absolute;left:-14px;top:0;
border-left:1px solid #bbb;border-bottom:1px solid #bbb;width:10px;height:12px}
.node a{font-family:ui-monospace,monospace;text-decoration:none} .tag{border-radius:3px;padding:0 5px;font-size:12px;margin-left:4px}
.tag.adopted{background:#d4f4dd;color:#145a32} .tag.rejected{background:#fde2e1;color:#922}
.tag.seed{background:#e3ecff;color:#1c3f94} .tag.other{background:#eee;color:#444}
.node-error{color:#922;font-size:13px;margin-left:1em} .failure pre{background:#fff4f4;padding:6px;overflow:auto}
pre{background:#f8f8f8;border:1px solid #e4e4e4;padding:8px;overflow:auto;font-size:12px;max-height:480px}
pre.diff .add{color:#137333;background:#e6f4ea;display:block} pre.diff .del{color:#a50e0e;background:#fce8e6;display:block}
pre.diff .hunk{color:#6a3ab2;display:block} details{margin:6px 0} summary{cursor:pointer}
svg.plot{border:1px solid #eee;background:#fcfcfc} .plot-title{font-weight:600;font-size:13px}
.tick,.legend,.axis{font-size:11px;fill:#444}
"""

_JS = """
(function(){
  // Self-check for headless tests: count what actually laid out with a non-zero size.
  function shown(sel){return Array.prototype.filter.call(document.querySelectorAll(sel),
    function(e){var r=e.getBoundingClientRect();return r.width>0&&r.height>0;}).length;}
  var h=document.documentElement;
  h.dataset.renderedNodes=shown('#lineage-tree li.node');
  h.dataset.renderedPoints=shown('#plot svg circle.pt');
  h.dataset.renderedLines=shown('#plot svg polyline');
})();
document.getElementById('expand').addEventListener('click',function(){
  var d=document.querySelectorAll('details');var open=this.dataset.open!=='1';
  d.forEach(function(x){x.open=open});this.dataset.open=open?'1':'0';
  this.textContent=open?'collapse all programs':'expand all programs';});
"""


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _table(head: list[str], rows: list[list[Any]], *, left: int = 1, cls: str = "") -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{escape(h)}</th>' for i, h in enumerate(head))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"l" if i < left else ""}">{escape(str(c))}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _tag(node: LineageNode) -> str:
    if not node.status:
        return ""
    kind = node.status if node.status in ("adopted", "rejected", "seed") else "other"
    return f'<span class="tag {kind}">{escape(node.status)}</span>'


def _without_kind(kind: str, message: str) -> str:
    return message[len(kind) + 2 :] if message.startswith(f"{kind}: ") else message


def _node_html(node: LineageNode) -> str:
    what = "meta" if node.kind == "improver" else "utility"
    bits = [node.kind]
    if node.generation is not None:
        bits.append(f"g{node.generation}")
    if node.task:
        bits.append(node.task)
    if node.label and node.label not in (node.kind, node.task):
        bits.append(node.label)
    text = " · ".join(escape(b) for b in bits)
    cost = f" · LM {node.lm.calls} calls, {node.lm.tokens} tok, ${node.lm.cost_usd:.4f}" if node.lm.calls else ""
    anchor = f'<a href="#prog-{escape(node.id)}">{escape(node.id[:10])}</a>' if node.program else escape(node.id[:10])
    error = (
        f'<div class="node-error"><a href="#fail-{escape(node.id)}">{escape(node.error_kind)}</a>: '
        f"{escape(_without_kind(node.error_kind, node.error).splitlines()[0][:300] if node.error else '')}</div>"
        if node.error_kind
        else ""
    )
    return (
        f'<span class="node-label">{anchor} {text} · {what} val {_f(node.val)} test {_f(node.test)}'
        f"{escape(cost)}</span>{_tag(node)}{error}"
    )


def _tree_html(lineage: Lineage) -> str:
    """Nested lists, one ``li.node`` per lineage node (children in log order)."""
    seen: set[str] = set()

    def rec(node: LineageNode) -> str:
        seen.add(node.id)
        kids = [k for k in lineage.children(node.id) if k.id not in seen]
        inner = "".join(rec(k) for k in kids)
        sub = f"<ul>{inner}</ul>" if inner else ""
        return (
            f'<li class="node" data-node="{escape(node.id)}" data-kind="{escape(node.kind)}">'
            f"{_node_html(node)}{sub}</li>"
        )

    items = "".join(rec(r) for r in lineage.roots if r.id not in seen)
    return f'<ul class="tree" id="lineage-tree">{items}</ul>'


def _plot(lineage: Lineage) -> str:
    if lineage.generations:
        gens = sorted(lineage.generations.items())
        series = [
            Series("meta val", [(g, v) for g, (v, _) in gens if v is not None], "#1f77b4", css="series-val"),
            Series("meta test", [(g, t) for g, (_, t) in gens if t is not None], "#ff7f0e", css="series-test"),
        ]
        cands = [
            (float(n.generation), n.val)
            for n in lineage.nodes.values()
            if n.kind == "improver" and n.generation and n.val is not None and n.status != "seed"
        ]
        if cands:
            series.append(
                Series(
                    "candidates (val)",
                    [(x, y) for x, y in cands if y is not None],
                    "#888",
                    line=False,
                    css="series-candidates",
                )
            )
        return line_plot(
            series, title="Meta-utility of the improver per generation", x_label="generation", y_label="meta-utility"
        )
    nodes = [n for n in lineage.nodes.values() if n.val is not None]
    series = [
        Series("val", [(i, n.val) for i, n in enumerate(nodes) if n.val is not None], "#1f77b4", css="series-val"),
        Series("test", [(i, n.test) for i, n in enumerate(nodes) if n.test is not None], "#ff7f0e", css="series-test"),
    ]
    return line_plot(series, title="Utility per lineage node (log order)", x_label="node", y_label="utility")


def _diff_html(diff: str) -> str:
    out = []
    for line in diff.splitlines():
        cls = (
            "hunk"
            if line.startswith("@@")
            else "add"
            if line.startswith("+") and not line.startswith("+++")
            else "del"
            if line.startswith("-") and not line.startswith("---")
            else ""
        )
        out.append(f'<span class="{cls}">{escape(line)}</span>' if cls else escape(line) + "\n")
    return "".join(out)


async def _programs_html(store: EventStore, lineage: Lineage) -> str:
    cache: dict[str, str] = {}

    async def text(digest: str | None) -> str | None:
        if not digest:
            return None
        if digest not in cache:
            try:
                cache[digest] = (await store.get_blob(digest)).decode("utf-8", errors="replace")
            except StoreError as exc:
                cache[digest] = f"<<blob {digest} unavailable: {exc}>>"
        return cache[digest]

    parts = []
    for _depth, _last, node, _trail in walk(lineage):
        if node.error_kind:
            trace = await text(node.traceback) or "(no traceback recorded)"
            parts.append(
                f'<section class="failure" id="fail-{escape(node.id)}"><h4>{escape(node.id[:10])} failed: '
                f"{escape(node.error_kind)}</h4><p>{escape(node.error)}</p>"
                f'<pre class="traceback">{escape(trace)}</pre></section>'
            )
        if not node.program:
            continue
        prog = await text(node.program) or ""
        base = await text(node.base)
        diff = node_diff(base, prog, f"parent/{(node.base or 'none')[:12]}", f"{node.kind}/{node.program[:12]}")
        title = (
            f"{node.id[:10]} · {node.kind}"
            + (f" · g{node.generation}" if node.generation is not None else "")
            + (f" · {node.task}" if node.task else "")
            + f" · program {node.program[:12]}"
        )
        parts.append(
            f'<section class="program" id="prog-{escape(node.id)}"><details><summary>{escape(title)} {_tag(node)}</summary>'
            f'<h4>diff against parent</h4><pre class="diff">{_diff_html(diff) or "(no parent or no change)"}</pre>'
            f'<h4>program</h4><pre class="code">{escape(prog)}</pre></details></section>'
        )
    return "".join(parts)


def _usage_rows(items: dict[str, Any]) -> list[list[Any]]:
    return [
        [k, u.calls, u.live, u.cache, u.offline, u.failed, u.prompt_tokens, u.completion_tokens, f"{u.cost_usd:.4f}"]
        for k, u in items.items()
    ]


_USAGE_HEAD = ["", "calls", "live", "cache", "offline", "failed", "prompt tok", "completion tok", "cost $"]


def render_report(audit: AuditReport, lineage: Lineage, programs: str) -> str:
    status = '<span class="ok">OK</span>' if audit.ok else '<span class="bad">FAILED</span>'
    integrity = [
        f"<p>Integrity: {status} — {escape(str(audit.chain))}; blobs {audit.blobs_checked} checked, "
        f"{len(audit.blob_problems)} bad.</p>"
    ]
    for p in audit.blob_problems:
        integrity.append(
            f'<p class="bad">blob {escape(p.digest)} is {p.problem} '
            f"(field {escape(p.field)} of {escape(p.event_type)} {escape(p.event_id)})</p>"
        )
    for u in audit.unreadable:
        integrity.append(f'<p class="bad">event {escape(u.id)} (seq {u.seq}) unreadable: {escape(u.reason)}</p>')
    solutions = [n for n in lineage.nodes.values() if n.kind == "solution"]
    task_rows = [
        [
            n.task or "",
            n.id[:10],
            (lineage.nodes[n.parent].id[:10] if n.parent in lineage.nodes else "–"),
            _f(n.val),
            _f(n.test),
            n.status,
        ]
        for n in solutions
    ]
    repair = [n for n in lineage.nodes.values() if n.kind == "program"]
    task_rows += [[n.task or "", n.id[:10], (n.parent or "–")[:10], _f(n.val), "–", n.status] for n in repair]
    gen_rows = [[g, _f(v), _f(t)] for g, (v, t) in sorted(lineage.generations.items())]
    viol_rows = [
        [c, n, audit.scanned.get(c, 0), audit.runtime.get(c, 0), "; ".join(audit.runtime_examples.get(c, []))]
        for c, n in audit.violations.items()
    ]
    node_usage = {
        (k[:10] + " " + (lineage.nodes[k].kind if k in lineage.nodes else "")): v for k, v in audit.lm_by_node.items()
    }
    hack_rows = [
        [r["event"][:12], f"{r['task']}/{r['split']}", ", ".join(f"{k}={v}" for k, v in r["signals"].items())]
        for r in audit.reward_hacking
    ]
    budget_rows = [[b["event"][:12], b["resource"], b["used"], b["limit"], b["detail"]] for b in audit.budget_overruns]
    body = f"""
<h1>STOP run {escape(audit.run_id)}</h1>
<p class="muted">command: {escape(audit.command or "?")} · status: {escape(audit.status)} · {audit.events} events ·
{len(lineage.nodes)} lineage nodes</p>
<button id="expand" type="button">expand all programs</button>
<h2>Audit</h2>
{"".join(integrity)}
<p>LM calls: {audit.lm.calls} (live {audit.lm.live}, cache {audit.lm.cache}, offline {audit.lm.offline},
failed {audit.lm.failed}); tokens {audit.lm.tokens}; cost ${audit.lm.cost_usd:.4f}{"" if audit.priced_models else " (no price table in the run config: cost 0)"}.</p>
<p>Proposals scanned: {audit.proposals}; unsandboxing attempts: {audit.unsandboxing}
({audit.unsandboxing_per_1000:.1f} per 1,000 proposals); reward-hacking flags: {len(audit.reward_hacking)};
budget overruns: {len(audit.budget_overruns)}.</p>
<h2>Meta-utility per generation</h2>
<div id="plot">{_plot(lineage)}</div>
{_table(["generation", "meta val", "meta test"], gen_rows, cls="generations") if gen_rows else ""}
<h2>Lineage</h2>
{_tree_html(lineage)}
<h2>Per-task utilities</h2>
{_table(["task", "node", "produced by", "val", "test", "status"], task_rows, left=3, cls="tasks") if task_rows else "<p class=muted>none</p>"}
<h2>Costs</h2>
<h3>per generation</h3>{_table(["generation", *_USAGE_HEAD[1:]], _usage_rows(audit.lm_by_generation))}
<h3>per lineage node</h3>{_table(["node", *_USAGE_HEAD[1:]], _usage_rows(node_usage))}
<h3>per model</h3>{_table(["model", *_USAGE_HEAD[1:]], _usage_rows(audit.lm_by_model))}
<h2>Violations</h2>
{_table(["category", "total", "scan (proposals)", "runtime", "examples"], viol_rows, cls="violations")}
<h3>Reward-hacking flags</h3>
{_table(["event", "task/split", "signals"], hack_rows, left=3) if hack_rows else "<p class=muted>none</p>"}
<h3>Budget overruns</h3>
{_table(["event", "resource", "used", "limit", "detail"], budget_rows, left=2) if budget_rows else "<p class=muted>none</p>"}
<h2>Programs</h2>
{programs}
"""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>STOP run {escape(audit.run_id[:16])}</title><style>{_CSS}</style></head>"
        f"<body>{body}<script>{_JS}</script></body></html>\n"
    )


async def write_report(store: EventStore, run_id: str, path: str | os.PathLike[str]) -> Path:
    """Write the report of ``run_id`` to ``path`` (atomically: a temp file, then rename)."""
    run = await load_run(store, run_id)
    tree = build_tree(run.events)
    lineage = lineage_from_tree(tree)
    audit = audit_log(run, tree, lineage)
    await check_blobs(store, run.events, audit)
    html = render_report(audit, lineage, await _programs_html(store, lineage))
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    await anyio.Path(tmp).write_text(html, encoding="utf-8")
    await anyio.Path(tmp).rename(out)
    return out
