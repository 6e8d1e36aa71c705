"""``stop report``: one self-contained HTML file for a run.

It renders the dashboard's own templates (``dashboard/templates``, the run page of ``stop
serve``) with the same graphical lineage tree (``dashboard.svgtree``) and plot, so both look
alike; here the CSS and JS are inlined and a Content-Security-Policy forbids fetching anything,
so the file opens offline, from a mail attachment or a CI artefact. Sections: the audit summary,
meta-utility per generation (plot), the lineage tree, per-task utilities, LM costs, violations,
failed sessions, and every program with its unified diff against its parent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
from markupsafe import Markup

from dashboard.render import asset, diff_html, environment, failures, run_context
from replay.audit import AuditReport, audit_log, check_blobs
from replay.lineage import Lineage, LineageNode, lineage_from_tree, node_diff, walk
from replay.runs import load_run
from replay.tree import build_tree
from store.base import EventStore
from store.errors import StoreError

__all__ = ("render_report", "write_report")


def _link(node: LineageNode) -> str | None:
    if node.error_kind:
        return f"#fail-{node.id}"
    return f"#prog-{node.id}" if node.program else None


async def _programs(store: EventStore, lineage: Lineage, cache: dict[str, str]) -> list[dict[str, Any]]:
    async def text(digest: str | None) -> str | None:
        if not digest:
            return None
        if digest not in cache:
            try:
                cache[digest] = (await store.get_blob(digest)).decode("utf-8", errors="replace")
            except StoreError as exc:
                cache[digest] = f"<<blob {digest} unavailable: {exc}>>"
        return cache[digest]

    out = []
    for _depth, _last, node, _trail in walk(lineage):
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
        out.append({"node": node, "title": title, "diff": diff_html(diff), "text": prog})
    return out


def render_report(context: dict[str, Any], programs: list[dict[str, Any]]) -> str:
    """The report page: the dashboard's run template, inline assets, every program."""
    return (
        environment()
        .get_template("run.html")
        .render(
            r=context,
            programs=programs,
            inline=True,
            css=Markup(asset("app.css")),
            js=Markup(asset("app.js")),
            stream=None,
            title=f"STOP run {context['run_id'][:16]}",
        )
    )


async def build_report(store: EventStore, run_id: str) -> str:
    run = await load_run(store, run_id)
    tree = build_tree(run.events)
    lineage = lineage_from_tree(tree)
    audit: AuditReport = audit_log(run, tree, lineage)
    await check_blobs(store, run.events, audit)
    blobs: dict[str, str] = {}
    context = run_context(audit, lineage, link=_link, failed=await failures(store, lineage, blobs))
    return render_report(context, await _programs(store, lineage, blobs))


async def write_report(store: EventStore, run_id: str, path: str | os.PathLike[str]) -> Path:
    """Write the report of ``run_id`` to ``path`` (atomically: a temp file, then rename)."""
    html = await build_report(store, run_id)
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    await anyio.Path(tmp).write_text(html, encoding="utf-8")
    await anyio.Path(tmp).rename(out)
    return out
