"""The meta-evaluator: scores improvers, decides adoption, drives every run's workflow.

It reacts to the facts that can move a run forward: a run starting, a session ending, a
utility answered, a decision made. Meta-utility requests are expanded into downstream runs and
aggregated (``agents.metautility``); everything else goes to the run's workflow, which is
re-entrant, so each call just appends whatever is now due. An answer to a call made inside a
running improver moves neither and is dropped after two lookups in the run's view.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from agents.context import AgentContext
from agents.loop import serve
from agents.metautility import progress_meta
from agents.workflows import progress
from events import Event
from events.routing import LM_ANSWERS, META_EVALUATOR, triggers
from events.stop_events import (
    GenerationStarted,
    RepairProblemStarted,
    RepairProgram,
    SessionCompleted,
    SessionRequested,
    UtilityEvaluated,
    UtilityRequested,
)
from events.types import RunStarted
from store.causation import ancestors

__all__ = ("run_meta_evaluator",)

_TRIGGERS = triggers(META_EVALUATOR)
#: LM answers move a workflow only when the workflow itself asked (self-repair), not a session.
_LM_ANSWERS = LM_ANSWERS
_REPAIR_NODES = {RepairProblemStarted.TYPE, RepairProgram.TYPE}
#: A utility answer moves the workflow when the workflow itself asked (not a session inside it).
_WORKFLOW_ASKERS = {RunStarted.TYPE, GenerationStarted.TYPE, RepairProgram.TYPE}
_TOP_LEVEL_PURPOSES = {"improve", "generation"}


Getter = Callable[[str], Awaitable[Event | None]]


async def _meta_request_above(get: Getter, ev: Event) -> Event | None:
    """For an event inside a meta-utility evaluation, the meta ``utility.requested`` it serves.

    The walk stops at the first such request, or at a session that is not a meta-utility run
    (what lies below that session belongs to it, not to a meta-utility)."""
    async for up in ancestors(get, ev):
        if up.is_a(UtilityRequested) and up.decode(UtilityRequested).task == "meta":
            return up
        if up.is_a(SessionRequested) and up.decode(SessionRequested).purpose != "meta_run":
            return None
    return None


async def _session_call_answer(get: Getter, ev: Event) -> bool:
    """Whether ``ev`` answers a call a running improver made (its request's cause is a session).

    Such an answer goes back into the session (``agents.bridge``) and moves nothing here: a
    meta-utility waits only for its runs' ends and their scores, a workflow only for requests of
    its own. Most utility answers of a self-improve run are of this kind."""
    if not (ev.is_a(UtilityEvaluated) or ev.type in _LM_ANSWERS):
        return False
    request = await get(ev.causation_id or "")
    asker = await get(request.causation_id or "") if request else None
    return asker is not None and asker.is_a(SessionRequested)


async def _moves_workflow(get: Getter, ev: Event) -> bool:
    """Whether ``ev`` is a fact at the workflow's own level (not deep inside a session)."""
    if ev.is_a(RunStarted):
        return True
    if ev.type in _LM_ANSWERS:
        request = await get(ev.causation_id or "")
        parent = await get(request.causation_id or "") if request else None
        return parent is not None and parent.type in _REPAIR_NODES
    if ev.is_a(SessionCompleted):
        session = await get(ev.causation_id or "")
        return session is not None and session.decode(SessionRequested).purpose in _TOP_LEVEL_PURPOSES
    if ev.is_a(UtilityEvaluated):
        request = await get(ev.causation_id or "")
        parent = await get(request.causation_id or "") if request else None
        if parent is None:
            return False
        if parent.type in _WORKFLOW_ASKERS:
            return True
        if parent.is_a(SessionCompleted):
            session = await get(parent.causation_id or "")
            return session is not None and session.decode(SessionRequested).purpose != "meta_run"
    return False


async def run_meta_evaluator(
    ctx: AgentContext, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    locks: dict[str, anyio.Lock] = {}

    async def handle(ev: Event) -> bool:
        view = ctx.runs.view(ev.run_id)
        get = view.getter(ctx.store).get
        if ev.is_a(UtilityRequested):
            # Kept in the view at once (a committed workflow-level event; the view's ``last_seq``
            # does not move): the answer to it, a later trigger, is then classified in memory.
            view.add(ev)
            if ev.decode(UtilityRequested).task == "meta":
                await ctx.runs.refreshed_view(ev.run_id)
                await progress_meta(ctx, ev)
            return True
        # A session's own call is told from its request and that request's asker, which the
        # view holds (the request came here first; the session was asked by a workflow step of
        # this context), else the store has: such an answer costs no catching up.
        if await _session_call_answer(get, ev):
            return True
        # One read catches the view up with the log; the trigger's ancestors (all workflow-level
        # events, committed before it) are then looked up in memory.
        await view.refresh(ctx.store, ev.run_id)
        meta = None if ev.type in _LM_ANSWERS else await _meta_request_above(get, ev)
        if meta is not None:
            await progress_meta(ctx, meta)
        if await _moves_workflow(get, ev):
            lock = locks.setdefault(ev.run_id, anyio.Lock())
            async with lock:
                await progress(ctx, ev.run_id)
        return True

    await serve(ctx, _TRIGGERS, handle, task_status=task_status)
