"""The dashboard's ASGI application (Starlette): pages, fragments and the live event stream.

Routes (all GET; every one behind the token gate when a token is set):

- ``/``: the runs of the store (status, model, cost, tokens, age); live.
- ``/run/RUN``: the run page (lineage tree, meta-utility plot, costs per generation, violations,
  reward-hacking flags, failed sessions); live.
- ``/run/RUN/node/NODE``: one lineage node (program, diff against its parent, utilities per
  split with per-instance outcomes, the LM exchange that produced it).
- ``/diff/A/B``: two runs side by side and where they part (``replay.diff.diff_runs``, the same
  logic as ``stop diff``).
- ``/events?run=RUN&after=EVENT``: server-sent events fed by the store's subscription. The SSE
  id of each message is the event id; a reconnecting browser sends ``Last-Event-ID`` and the
  stream resumes right after that event. Each message names the page fragments the event
  changes; the page re-fetches just those from ``/run/RUN/fragments?names=...`` (or
  ``/fragments?names=runs``).
- ``/static/app.css``, ``/static/app.js``: the only assets; nothing is loaded from elsewhere.

Everything shown is a projection of the log; the store is opened read-only and nothing here
writes.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import anyio
import structlog
from markupsafe import Markup
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from dashboard.nodeview import node_details
from dashboard.projection import Runs, RunViews
from dashboard.render import FRAGMENTS, asset, diff_html, environment, failures, fragment, run_context, sections
from dashboard.security import SecurityHeaders, TokenGate, is_loopback
from replay.diff import diff_runs
from replay.lineage import LineageNode, UnknownNode
from replay.runs import UnknownRun, resolve_run
from store.base import EventStore
from store.errors import StoreError

__all__ = ("affected_fragments", "create_app")

log = structlog.get_logger("dashboard")

#: event type -> the run-page fragments it can change (anything else: header and audit counts)
_AFFECTS: dict[str, tuple[str, ...]] = {
    "run.started": FRAGMENTS,
    "run.finished": ("header", "audit", "failures"),
    "run.failed": ("header", "audit", "failures"),
    "generation.started": ("header", "audit", "plot", "tree"),
    "improver.decided": ("header", "audit", "plot", "tree", "tasks"),
    "utility.requested": ("header", "audit", "tree"),
    "utility.evaluated": ("header", "audit", "plot", "tree", "tasks", "violations"),
    "session.requested": ("header", "audit", "tree"),
    "session.completed": ("header", "audit", "tree", "tasks", "failures", "violations"),
    "lm.requested": ("header", "audit", "costs"),
    "lm.responded": ("header", "audit", "costs"),
    "lm.failed": ("header", "audit", "costs", "failures"),
    "program.scanned": ("header", "audit", "violations"),
    "sandbox.batch.completed": ("header", "audit", "violations"),
    "budget.exceeded": ("header", "audit", "violations"),
    "budget.exhausted": ("header", "audit", "violations", "failures"),
    "budget.raised": ("header", "audit"),
    "repair.problem": ("header", "audit", "tree", "plot"),
    "repair.program": ("header", "audit", "tree", "plot", "tasks"),
}
_DEFAULT_AFFECTS = ("header", "audit")

#: what can change a row of the runs list
_LIST_TYPES = (
    "run.started",
    "run.finished",
    "run.failed",
    "generation.started",
    "improver.decided",
    "lm.responded",
    "lm.failed",
    "budget.exhausted",
    "budget.raised",
    "session.completed",
)


def affected_fragments(event_type: str) -> tuple[str, ...]:
    return _AFFECTS.get(event_type, _DEFAULT_AFFECTS)


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "–"
    s = max(0, int(now - t))
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m ago"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m ago"
    return f"{s // 86400}d ago"


class Dashboard:
    """The pages, over one read-only store."""

    def __init__(self, store: EventStore, store_name: str) -> None:
        self.store = store
        self.store_name = store_name
        self.runs = Runs(store)
        self.blobs: dict[str, str] = {}

    # ---- helpers ---------------------------------------------------------------------------
    def page(self, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("stream", None)
        ctx.setdefault("fragments_url", "")
        html = environment().get_template(template).render(inline=False, store_name=self.store_name, **ctx)
        return HTMLResponse(html, status_code=status_code)

    async def run_id(self, ref: str) -> str:
        try:
            return await resolve_run(self.store, ref)
        except UnknownRun as exc:
            raise HTTPException(404, str(exc)) from exc

    @staticmethod
    def link(run_id: str) -> Any:
        def href(node: LineageNode) -> str:
            return f"/run/{quote(run_id)}/node/{quote(node.id)}"

        return href

    async def context(self, v: RunViews) -> dict[str, Any]:
        now = time.time()
        return run_context(
            v.audit,
            v.lineage,
            link=self.link(v.run_id),
            failed=await failures(self.store, v.lineage, self.blobs),
            outcome=v.outcome if v.ended else None,
            blobs_checked=False,
            extra={
                "model": v.model,
                "age": _ago(v.started_at, now),
                "active": _ago(v.active_at, now),
                "status": v.status,
            },
        )

    async def store_cursor(self) -> str | None:
        last = await self.store.last_seq()
        if not last:
            return None
        tail = await self.store.read(after=max(0, last - 1), limit=1)
        return tail[-1].id if tail else None

    # ---- pages -------------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        cursor = await self.store_cursor()
        return self.page(
            "runs.html",
            title="STOP runs",
            runs=await self.runs_rows(),
            stream="/events" + (f"?after={cursor}" if cursor else ""),
            fragments_url="/fragments",
        )

    async def runs_rows(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {**s.to_json(), "age": _ago(s.started_at, now), "active": _ago(s.active_at, now)}
            for s in await self.runs.summaries()
        ]

    async def index_fragments(self, request: Request) -> Response:
        names = request.query_params.get("names", "runs").split(",")
        out = {}
        if "runs" in names:
            out["runs"] = str(sections().runs_table(await self.runs_rows()))
        return JSONResponse(out)

    async def run_page(self, request: Request) -> Response:
        run_id = await self.run_id(request.path_params["run"])
        if run_id != request.path_params["run"]:
            return RedirectResponse(f"/run/{quote(run_id)}", status_code=303)
        v = await self.runs.views(run_id)
        stream = f"/events?run={quote(run_id)}" + (f"&after={quote(v.last_event_id)}" if v.last_event_id else "")
        return self.page(
            "run.html",
            title=f"STOP run {run_id[:24]}",
            r=await self.context(v),
            stream=stream,
            fragments_url=f"/run/{quote(run_id)}/fragments",
        )

    async def run_fragments(self, request: Request) -> Response:
        run_id = await self.run_id(request.path_params["run"])
        names = [n for n in request.query_params.get("names", "").split(",") if n]
        unknown = [n for n in names if n not in FRAGMENTS]
        if unknown:
            return PlainTextResponse(f"unknown fragment(s): {', '.join(unknown)}", status_code=400)
        r = await self.context(await self.runs.views(run_id))
        return JSONResponse({name: fragment(name, r) for name in names or FRAGMENTS})

    async def node_page(self, request: Request) -> Response:
        run_id = await self.run_id(request.path_params["run"])
        v = await self.runs.views(run_id)
        try:
            node = v.lineage.find(request.path_params["node"])
        except UnknownNode as exc:
            raise HTTPException(404, str(exc)) from exc
        details = await node_details(self.store, v.tree, v.calls, node)
        nodes = v.lineage.nodes
        return self.page(
            "node.html",
            title=f"node {node.id[:10]} of {run_id[:24]}",
            run_id=run_id,
            d=details,
            node=node,
            parent=nodes.get(node.parent or ""),
            children=v.lineage.children(node.id),
            diff=diff_html(details.diff),
            href=self.link(run_id),
        )

    async def diff_form(self, request: Request) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        if not a or not b:
            raise HTTPException(400, "name two runs: /diff/A/B")
        return RedirectResponse(f"/diff/{quote(a)}/{quote(b)}", status_code=303)

    async def diff_page(self, request: Request) -> Response:
        run_a = await self.run_id(request.path_params["a"])
        run_b = await self.run_id(request.path_params["b"])
        result = await diff_runs(self.store, run_a, self.store, run_b)
        sides = [await self.context(await self.runs.views(r)) for r in (run_a, run_b)]
        first = result.first
        return self.page(
            "diff.html",
            title=f"diff {run_a[:16]} .. {run_b[:16]}",
            result=result,
            first=first,
            payload_diff=diff_html(first.payload_diff) if first else Markup(""),
            blob_diffs={k: diff_html(t) for k, t in first.blob_diffs.items()} if first else {},
            where=" / ".join(f"{t}[{k}]" for t, k in first.path) if first else "",
            sides=sides,
        )

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        types = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
        if name not in types:
            raise HTTPException(404, "no such asset")
        return Response(asset(name), media_type=types[name])

    # ---- the live stream -----------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        run = request.query_params.get("run") or None
        if run is not None:
            run = await self.run_id(run)
        cursor = request.headers.get("last-event-id") or request.query_params.get("after") or ""
        after = 0
        if cursor:
            ev = await self.store.get(cursor)
            if ev is None or (run is not None and ev.run_id != run):
                return PlainTextResponse(f"unknown event id {cursor!r} (Last-Event-ID / after)", status_code=404)
            after = ev.seq or 0
        types = None if run is not None else _LIST_TYPES
        log.info("dashboard.stream", run_id=run, after=after)

        shutdown = anyio.Event()
        send, receive = anyio.create_memory_object_stream[ServerSentEvent](64)

        async def produce() -> None:
            # Runs in the response's task group; ends when the server shuts down, so the stream
            # is closed properly (the final chunk is sent) instead of being cut.
            async with send:
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:

                        async def stop_on_shutdown() -> None:
                            await shutdown.wait()
                            scope.cancel()

                        tg.start_soon(stop_on_shutdown)
                        async for ev in self.store.subscribe(run, after=after, types=types):
                            frags = affected_fragments(ev.type) if run is not None else ("runs",)
                            data = {"seq": ev.seq, "type": ev.type, "run_id": ev.run_id, "fragments": list(frags)}
                            await send.send(ServerSentEvent(data=json.dumps(data), id=ev.id, event="append"))

        return EventSourceResponse(
            receive,
            ping=15,
            headers={"Cache-Control": "no-store"},
            data_sender_callable=produce,
            shutdown_event=shutdown,
            shutdown_grace_period=1.0,
        )


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return HTMLResponse(
        environment()
        .get_template("error.html")
        .render(inline=False, stream=None, title=f"{status}", status=status, detail=detail, store_name=""),
        status_code=status,
    )


async def _store_error(request: Request, exc: Exception) -> Response:
    log.error("dashboard.store_error", path=request.url.path, error=str(exc))
    return PlainTextResponse(f"the store could not be read: {exc}", status_code=503)


def create_app(
    store: EventStore, *, store_name: str, token: str | None, port: int, host: str = "127.0.0.1"
) -> Starlette:
    """The dashboard over ``store`` (opened read-only by the caller), bound to ``host``. With
    ``token``, every request must carry it (see :mod:`dashboard.security`). Bound to a loopback
    address, requests must also name this machine in their Host header, so a web page elsewhere
    cannot reach the dashboard by pointing a DNS name at 127.0.0.1 (DNS rebinding)."""
    d = Dashboard(store, store_name)
    routes = [
        Route("/", d.index),
        Route("/fragments", d.index_fragments),
        Route("/run/{run}", d.run_page),
        Route("/run/{run}/fragments", d.run_fragments),
        Route("/run/{run}/node/{node}", d.node_page),
        Route("/diff", d.diff_form),
        Route("/diff/{a}/{b}", d.diff_page),
        Route("/events", d.events),
        Route("/static/{name}", d.static),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if is_loopback(host):
        local = sorted({"127.0.0.1", "localhost", "[::1]", "::1", host.lower()})
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=local))
    if token:
        middleware.append(Middleware(TokenGate, token=token, port=port))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _not_found, StoreError: _store_error},
    )
