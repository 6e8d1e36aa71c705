"""The shape every agent shares: subscribe, dispatch each trigger event, retry what waits.

A handler returns True when the event needs nothing more from this agent (done, or done by
someone else), False when another worker holds a lease on it: such events are offered again
every half lease, so work whose worker died is picked up. Handlers run concurrently in the
agent's task group; ``limit`` bounds how many run at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

import anyio
import anyio.abc

from agents.context import AgentContext
from events import Event, make_event
from events.types import RunFailed
from lm import CacheMiss
from store.causation import ancestors
from store.errors import ConflictError, StoreUnavailable

__all__ = ("Handler", "record_failure", "serve")

Handler = Callable[[Event], Awaitable[bool]]


def _unwrap(exc: BaseException) -> BaseException:
    """The one real error inside task-group wrappers."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def record_failure(ctx: AgentContext, ev: Event, exc: BaseException) -> None:
    """An agent bug or infrastructure failure ends the run with a clear, recorded reason."""
    exc = _unwrap(exc)
    if isinstance(exc, StoreUnavailable):
        # The log cannot be written (disk full, I/O error, read-only): recording the failure
        # would fail the same way. Stop the agent with the store's one-line error instead.
        raise exc
    if isinstance(exc, CacheMiss):  # replay left the recording: an expected outcome, no traceback
        ctx.log.warning("replay.cache_miss", event_id=ev.id, error=str(exc))
    else:
        ctx.log.error("agent.failed", event_id=ev.id, type=ev.type, error=repr(exc), exc_info=exc)
    root = await _root(ctx, ev)
    failed = make_event(
        ev.run_id,
        RunFailed(error=f"{ctx.agent} failed on {ev.type} {ev.id}: {type(exc).__name__}: {exc}", detail=""),
        cause=root,
        key="failed",
    )
    try:
        await ctx.store.append([failed])
    except ConflictError:  # a different failure was recorded first; that one stands
        pass


async def _root(ctx: AgentContext, ev: Event) -> Event:
    root = ev
    async for up in ancestors(ctx.store.get, ev):
        root = up
    return root


async def serve(
    ctx: AgentContext,
    types: Collection[str],
    handle: Handler,
    *,
    limit: int | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    limiter = anyio.CapacityLimiter(limit) if limit else None
    waiting: dict[str, Event] = {}
    running: set[str] = set()

    async def run_one(ev: Event) -> None:
        running.add(ev.id)
        try:
            if limiter is not None:
                async with limiter:
                    finished = await handle(ev)
            else:
                finished = await handle(ev)
            if finished:
                waiting.pop(ev.id, None)
            else:
                waiting[ev.id] = ev
        except Exception as exc:  # noqa: BLE001 - recorded as the run's failure, not swallowed
            waiting.pop(ev.id, None)
            await record_failure(ctx, ev, exc)
        finally:
            running.discard(ev.id)

    async def retry_waiting() -> None:
        while True:
            await anyio.sleep(max(0.05, ctx.lease_s / 2))
            for ev in sorted(waiting.values(), key=lambda e: e.seq or 0):
                if ev.id not in running:
                    tg.start_soon(run_one, ev)

    async with anyio.create_task_group() as tg:
        tg.start_soon(retry_waiting)
        task_status.started()
        async for ev in ctx.store.subscribe(ctx.run_id, types=types):
            if ev.id not in running:
                tg.start_soon(run_one, ev)
