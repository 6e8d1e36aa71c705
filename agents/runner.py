"""The sandbox runner: executes batches of solution jobs and improver sessions.

For a running improver it is also the bridge: each ``language_model.*`` or ``utility(...)``
call inside the sandbox becomes a request event whose identity is (session, request content,
occurrence among identical requests), and the answering event is passed back in. A request
that is already answered in the log (resume, or a session re-run) is answered from the log.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from typing import Any

import anyio

from agents.bridge import SessionBridge
from agents.claims import hold_lease, try_claim
from agents.context import AgentContext, AnswerWaiter, append_once
from agents.crashpoints import crash_point
from agents.guest_errors import improver_traceback
from agents.loop import serve
from agents.tasks_view import task_for
from events import Event, make_event, sha256_hex
from events.routing import LM_ANSWERS, SANDBOX_RUNNER, answer_types, triggers
from events.stop_events import (
    ProgramScanned,
    SandboxBatchCompleted,
    SandboxBatchRequested,
    SessionCompleted,
    SessionRequested,
    UtilityRequested,
    session_error_kind,
)
from sandbox import JobResult, SandboxPool, scan_program
from store.base import EventStore

__all__ = ("run_runner",)

_BATCH_DONE = answer_types(SandboxBatchRequested.TYPE)
_SESSION_DONE = answer_types(SessionRequested.TYPE)
_UTILITY_DONE = answer_types(UtilityRequested.TYPE)


#: Scan findings by program text (most recent last): the scan is a pure function of the text,
#: and a run scores the same solution in many batches (an improver's candidates, the meta-utility's
#: runs of one improver), so each distinct text is parsed once per process.
_SCANS: OrderedDict[str, tuple[list[dict[str, Any]], list[str]]] = OrderedDict()
_TEXTS_KEPT = 256


def _findings(program: str) -> tuple[list[dict[str, Any]], list[str]]:
    known = _SCANS.get(program)
    if known is None:
        findings = scan_program(program)
        data = [{"category": f.category, "detail": f.detail, "line": f.line} for f in findings]
        known = (data, sorted({f.category for f in findings}))
        _SCANS[program] = known
        while len(_SCANS) > _TEXTS_KEPT:
            _SCANS.popitem(last=False)
    else:
        _SCANS.move_to_end(program)
    data, categories = known
    return [dict(d) for d in data], list(categories)


def _scan_event(work: Event, program: str, program_hash: str, role: str) -> Event:
    data, categories = _findings(program)
    return make_event(
        work.run_id,
        ProgramScanned(program=program_hash, role=role, findings=data, categories=categories),
        cause=work,
        key="scan",
    )


class _Texts:
    """Program texts by blob hash, most recent last (blobs are content-addressed: no invalidation)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._texts: OrderedDict[str, str] = OrderedDict()

    async def get(self, digest: str) -> str:
        text = self._texts.get(digest)
        if text is None:
            text = (await self._store.get_blob(digest)).decode("utf-8")
            self._texts[digest] = text
            while len(self._texts) > _TEXTS_KEPT:
                self._texts.popitem(last=False)
        else:
            self._texts.move_to_end(digest)
        return text


async def _serve_recorded(ctx: AgentContext, work: Event, scan: Event) -> bool:
    """Replay: re-append the recorded outcome of this batch (same identity) instead of running,
    together with the batch's scan."""
    assert ctx.recorded is not None
    recorded = await ctx.recorded.children(work.id, _BATCH_DONE)
    if not recorded:
        return False
    ev = recorded[0]
    blob = await ctx.recorded.get_blob(ev.decode(SandboxBatchCompleted).results)
    await ctx.store.append([scan, Event(**ev.body())], blobs=[blob])  # as it was recorded
    return True


async def handle_batch(
    ctx: AgentContext, pool: SandboxPool, texts: _Texts, work: Event, *, backlog: bool = False
) -> bool:
    """Run one batch. A batch asked while the runner is live is not looked up first: the claim
    finds out whether it is done (and a recorded outcome, or a second copy of a result, is
    re-appended idempotently). One from the ``backlog`` (a resume) is most likely done: looked up."""
    if backlog and await ctx.store.children(work.id, _BATCH_DONE):
        return True
    p = work.decode(SandboxBatchRequested)
    solution = await texts.get(p.solution)
    scan = _scan_event(work, solution, p.solution, "solution")
    if ctx.recorded is not None and not ctx.re_execute_evaluations:
        if await _serve_recorded(ctx, work, scan):
            return True
    # The scan is recorded in the claim's transaction (one append, one wake-up of every
    # subscriber, instead of two); a worker that loses the claim records nothing.
    claim = await try_claim(ctx, work, _BATCH_DONE, with_claim=[scan])
    if claim.event is None:
        return claim.done
    task = task_for(p.task)
    async with hold_lease(ctx, work, claim.event):
        start = anyio.current_time()
        # One evaluation is one sandboxed batch (one process; more only after a stopped
        # instance): splitting it per worker doubled the fixed cost of every batch while the
        # evaluations of a run already keep the workers busy.
        results, facts = await pool.run_batch_facts(task.jobs(solution, p.split, seed=p.seed))
        wall = anyio.current_time() - start
    crash_point("runner.batch.before_record")
    data = [r.to_json() for r in results]
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")
    statuses = Counter(r.status for r in results)
    violations = sorted({v for r in results for v in r.violations})
    done = make_event(
        work.run_id,
        SandboxBatchCompleted(
            results=sha256_hex(blob),
            statuses=dict(sorted(statuses.items())),
            violations=violations,
            wall_s=round(wall, 6),
            processes=facts.processes,
            output_bytes=facts.output_bytes,
            output_cap_hit=facts.output_cap_hit,
            max_rss_kb=facts.max_rss_kb,
            worker_s=round(facts.wall_s, 6),
            queue_s=round(facts.queue_s, 6),
        ),
        cause=work,
        key="result",
    )
    await append_once(ctx.store, [done], blobs=[blob])
    return True


async def handle_session(ctx: AgentContext, pool: SandboxPool, waiter: AnswerWaiter, work: Event) -> bool:
    claim = await try_claim(ctx, work, _SESSION_DONE)
    if claim.event is None:
        return claim.done
    p = work.decode(SessionRequested)
    improver = ctx.substitutions.get(p.improver) or (await ctx.store.get_blob(p.improver)).decode("utf-8")
    initial = (await ctx.store.get_blob(p.initial_solution)).decode("utf-8")
    await append_once(ctx.store, [_scan_event(work, improver, p.improver, "improver")])
    bridge = await SessionBridge.create(ctx, waiter, work)
    async with hold_lease(ctx, work, claim.event):
        result = await pool.run_session(bridge.job(improver, initial), bridge.on_request)
    crash_point("runner.session.before_record")
    events, blobs = _session_outcome(work, bridge, result)
    await append_once(ctx.store, events, blobs=blobs)
    return True


def _session_outcome(work: Event, bridge: SessionBridge, result: JobResult) -> tuple[list[Event], list[bytes]]:
    solution: str | None = None
    error = result.error or ""
    status = result.status
    blobs: list[bytes] = []
    if result.status == "ok":
        value = result.value
        if isinstance(value, str) and value.strip():
            raw = value.encode("utf-8")
            solution = sha256_hex(raw)
            blobs.append(raw)
        else:
            status = "invalid_output"
            error = f"improve_algorithm returned {type(value).__name__}, not a program text"
    tail = (result.stdout[-500:] + result.stderr[-500:]) if (result.stdout or result.stderr) else ""
    trace = improver_traceback(result.traceback) if status != "ok" else None
    trace_hash: str | None = None
    if trace is not None:
        raw_trace = trace.encode("utf-8")
        trace_hash = sha256_hex(raw_trace)
        blobs.append(raw_trace)
    done = make_event(
        work.run_id,
        SessionCompleted(
            status=status,
            solution=solution,
            error=error[:2000],
            lm_calls=bridge.lm_calls,
            utility_calls=bridge.utility_calls,
            violations=sorted(set(result.violations)),
            wall_s=round(result.wall_time_s, 6),
            cpu_s=round(result.cpu_time_s, 6),
            stdout_tail=tail,
            error_kind=session_error_kind(status, error),
            traceback=trace_hash,
        ),
        cause=work,
        key="result",
    )
    return [done], blobs


async def run_runner(
    ctx: AgentContext,
    pool: SandboxPool,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``sandbox.batch.requested`` and ``session.requested`` for the context's run(s).

    A runner claims only as many batches as its pool can work on at once (a few per warm
    worker): claiming every batch it sees would queue them all behind its own workers while
    another runner process on the same store sits idle. Sessions mostly wait on the model, so
    many more of them than cores run at once: ``max_sessions`` of the pool's config. A
    ``generation`` session waits on the ``meta_run`` sessions its utility calls start, so it
    holds no slot (counting it could deadlock); there is one per generation."""
    # What a session's calls wait for: the answers to its utility and LM requests.
    waiter = AnswerWaiter(ctx.store, ctx.run_id, types=_UTILITY_DONE | LM_ANSWERS)
    texts = _Texts(ctx.store)
    live_after = await ctx.store.last_seq()
    batch_slots = anyio.CapacityLimiter(2 * pool.config.worker_count)
    session_slots = anyio.CapacityLimiter(pool.config.max_sessions)

    async def handle(ev: Event) -> bool:
        if ev.is_a(SandboxBatchRequested):
            async with batch_slots:
                return await handle_batch(ctx, pool, texts, ev, backlog=(ev.seq or 0) <= live_after)
        if ev.decode(SessionRequested).purpose == "generation":
            return await handle_session(ctx, pool, waiter, ev)
        async with session_slots:
            return await handle_session(ctx, pool, waiter, ev)

    async with anyio.create_task_group() as tg:
        await tg.start(waiter.run)
        await tg.start(lambda task_status: serve(ctx, triggers(SANDBOX_RUNNER), handle, task_status=task_status))
        task_status.started()
