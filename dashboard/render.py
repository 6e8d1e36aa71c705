"""The templates both the dashboard and ``stop report`` render, and the context they are given.

One Jinja2 environment (autoescaping on) loads ``dashboard/templates``; a run page is
``run.html`` whose sections are the macros of ``sections.html``, so the dashboard can re-render
one section (a *fragment*) when an event changes it and the report prints the same sections
into one self-contained file. CSS and JS live in ``dashboard/assets``: the dashboard serves
them from its own origin, the report inlines them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from html import escape
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from agents.run_status import RunOutcome
from dashboard.svgtree import tree_svg
from replay.audit import AuditReport
from replay.lineage import Lineage, LineageNode
from replay.svgplot import Series, line_plot
from store.base import EventStore
from store.errors import StoreError

__all__ = (
    "FRAGMENTS",
    "Failure",
    "asset",
    "diff_html",
    "environment",
    "failures",
    "fragment",
    "plot_svg",
    "run_context",
    "sections",
)

#: The run page's live sections, in page order (``data-fragment`` names).
FRAGMENTS = ("header", "audit", "plot", "tree", "tasks", "costs", "violations", "failures")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["f3"] = lambda x: "–" if x is None else f"{x:.3f}"
    env.filters["usd"] = lambda x: f"${x:.4f}"
    env.filters["short"] = lambda s, n=10: (s or "")[:n]
    return env


@cache
def asset(name: str) -> str:
    """The text of ``dashboard/assets/NAME`` (app.css, app.js)."""
    return resources.files("dashboard").joinpath("assets", name).read_text(encoding="utf-8")


def sections() -> Any:
    """The module of section macros (``sections.html``)."""
    return environment().get_template("sections.html").module


def fragment(name: str, r: Mapping[str, Any]) -> str:
    """One section of a run page, rendered alone (what a live page swaps in)."""
    if name not in FRAGMENTS:
        raise KeyError(name)
    return str(getattr(sections(), name)(r))


def diff_html(diff: str) -> Markup:
    """A unified diff as HTML: every line escaped, added/removed/hunk lines classed."""
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
    return Markup("".join(out))


def plot_svg(lineage: Lineage) -> Markup:
    """Meta-utility per generation (self-improve), else utility per lineage node."""
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
        return Markup(
            line_plot(
                series,
                title="Meta-utility of the improver per generation",
                x_label="generation",
                y_label="meta-utility",
            )
        )
    nodes = [n for n in lineage.nodes.values() if n.val is not None]
    series = [
        Series("val", [(i, n.val) for i, n in enumerate(nodes) if n.val is not None], "#1f77b4", css="series-val"),
        Series("test", [(i, n.test) for i, n in enumerate(nodes) if n.test is not None], "#ff7f0e", css="series-test"),
    ]
    return Markup(line_plot(series, title="Utility per lineage node (log order)", x_label="node", y_label="utility"))


@dataclass(frozen=True)
class Failure:
    """A lineage node whose session failed: where, why, and the improver's traceback."""

    node: LineageNode
    traceback: str | None


async def failures(store: EventStore, lineage: Lineage, cache: dict[str, str] | None = None) -> list[Failure]:
    """The failed nodes of a run with their tracebacks (blobs read once per ``cache``)."""
    cache = {} if cache is None else cache
    out = []
    for node in lineage.nodes.values():
        if not node.error_kind:
            continue
        trace = None
        if node.traceback:
            if node.traceback not in cache:
                try:
                    cache[node.traceback] = (await store.get_blob(node.traceback)).decode("utf-8", "replace")
                except StoreError as exc:
                    cache[node.traceback] = f"<<blob {node.traceback} unavailable: {exc}>>"
            trace = cache[node.traceback]
        out.append(Failure(node, trace))
    return out


def _usage_rows(items: Iterable[tuple[str, Any, str | None]]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "href": href,
            "cells": [
                u.calls,
                u.live,
                u.cache,
                u.offline,
                u.failed,
                u.prompt_tokens,
                u.completion_tokens,
                u.tokens,
                f"{u.cost_usd:.4f}",
            ],
        }
        for name, u, href in items
    ]


def run_context(
    audit: AuditReport,
    lineage: Lineage,
    *,
    link: Callable[[LineageNode], str | None],
    failed: list[Failure],
    outcome: RunOutcome | None = None,
    blobs_checked: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the run sections show, prepared once (the templates only lay it out)."""
    nodes = lineage.nodes
    solutions = [n for n in nodes.values() if n.kind in ("solution", "program")]
    task_rows = [
        {
            "task": n.task or "",
            "node": n,
            "href": link(n),
            "parent": nodes[n.parent] if n.parent in nodes else None,
            "parent_href": link(nodes[n.parent]) if n.parent in nodes else None,
        }
        for n in solutions
    ]
    node_usage = [
        (k[:10] + " " + (nodes[k].kind if k in nodes else ""), v, link(nodes[k]) if k in nodes else None)
        for k, v in audit.lm_by_node.items()
    ]
    status = str(outcome.status) if outcome is not None else audit.status
    return {
        "run_id": audit.run_id,
        "command": audit.command or lineage.command or "?",
        "status": status,
        "reason": outcome.reason if outcome is not None else "",
        "errors": outcome.errors if outcome is not None else [],
        "events": audit.events,
        "nodes": len(nodes),
        "audit": audit,
        "blobs_checked": blobs_checked,
        "plot": plot_svg(lineage),
        "generations": [
            {"generation": g, "val": v, "test": t, "lm": audit.lm_by_generation.get(f"g{g}")}
            for g, (v, t) in sorted(lineage.generations.items())
        ],
        "tree": Markup(tree_svg(lineage, link)),
        "tasks": task_rows,
        "usage_generation": _usage_rows((k, v, None) for k, v in audit.lm_by_generation.items()),
        "usage_node": _usage_rows(node_usage),
        "usage_model": _usage_rows((k, v, None) for k, v in audit.lm_by_model.items()),
        "unattributed": lineage.unattributed,
        "violations": [
            {
                "category": c,
                "total": n,
                "scan": audit.scanned.get(c, 0),
                "runtime": audit.runtime.get(c, 0),
                "examples": "; ".join(audit.runtime_examples.get(c, [])),
            }
            for c, n in audit.violations.items()
        ],
        "hacking": audit.reward_hacking,
        "overruns": audit.budget_overruns,
        "failed": [{"node": f.node, "href": link(f.node), "traceback": f.traceback} for f in failed],
        **(extra or {}),
    }
