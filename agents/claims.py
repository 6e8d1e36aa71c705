"""Leases on work, recorded in the log.

A claim's identity is (the work, attempt n). Two workers that claim the same attempt write the
same identity with different payloads; the store keeps the first and rejects the second, so
exactly one of them owns the work. A lease expires when its time runs out (renewed while the
work runs) or at once when its worker was a process on this machine that is no longer alive;
then the next attempt may be claimed. Lease times are wall-clock by nature: they decide who
works, never what the result is, and replay does not compare them.

Across machines (a store with a lease table, ``LeaseTable``: PostgreSQL) times come from the
database's clock, so hosts whose clocks disagree still agree on expiry, and renewals update a
row beside the log instead of appending an event every third of a lease. The claim event and
its identity are the same on every store; the PID shortcut applies only to a worker whose
recorded host is this host.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import anyio

from agents.context import AgentContext, append_once
from events import Event, make_event
from events.stop_events import WorkClaimed, WorkRenewed

__all__ = ("Claim", "LeaseTable", "hold_lease", "lease_expired", "store_clock", "try_claim")

_HOST = socket.gethostname()


@runtime_checkable
class LeaseTable(Protocol):
    """A store that keeps leases beside the log, on its own clock (see ``store.postgres``)."""

    async def clock(self) -> float: ...

    async def lease_renew(self, work: Event, attempt: int, worker: str, host: str, lease_s: float) -> float: ...

    async def lease_expiry(self, work_id: str, attempt: int) -> float | None: ...

    async def worker_seen(self, worker: str, agent: str, host: str, pid: int) -> None: ...


async def store_clock(store: object) -> float:
    """The clock leases are judged by: the shared store's when it has one, else this host's."""
    return await store.clock() if isinstance(store, LeaseTable) else time.time()


_last_seen: dict[str, float] = {}


async def _seen(ctx: AgentContext, store: LeaseTable) -> None:
    """Record this worker and its host in the store's worker table (at most every third lease)."""
    now = time.monotonic()
    if now - _last_seen.get(ctx.worker, -1e9) >= ctx.lease_s / 3:
        await store.worker_seen(ctx.worker, ctx.agent, _HOST, os.getpid())
        _last_seen[ctx.worker] = now


def _worker_alive(worker: str) -> bool | None:
    """True/False for a worker process on this host; None when it ran elsewhere."""
    try:
        _, where = worker.split("@", 1)
        host, pid, _ = where.rsplit(":", 2)
    except ValueError:
        return None
    if host != _HOST:
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def lease_expired(claim: Event, renewals: list[Event], now: float, renewed_until: float | None = None) -> bool:
    lease = claim.decode(WorkClaimed)
    if _worker_alive(lease.worker) is False:
        return True
    expires = max([lease.expires_at] + [r.decode(WorkRenewed).expires_at for r in renewals])
    return now > max(expires, renewed_until or 0.0)


@dataclass(frozen=True)
class Claim:
    """The outcome of a claim: ``event`` is this worker's lease; without one, ``done`` says
    whether the work is finished (nothing to do) or another worker holds it (ask again later)."""

    event: Event | None
    done: bool = False


async def try_claim(
    ctx: AgentContext, work: Event, done_types: Collection[str], *, with_claim: Sequence[Event] = ()
) -> Claim:
    """Claim ``work`` for this worker, unless it is done or someone else holds a live lease.

    ``with_claim`` are events to record in the claim's own transaction (idempotent ones, such as
    the work's scan): a worker that loses the claim stores none of them. An extra recorded
    differently before is left as it was, as ``append_once`` leaves it."""
    kids = await ctx.store.children(work.id)
    if any(k.type in done_types for k in kids):
        return Claim(None, done=True)
    claims = [k for k in kids if k.is_a(WorkClaimed)]
    attempt = 0
    if claims:
        latest = max(claims, key=lambda c: c.decode(WorkClaimed).attempt)
        n = latest.decode(WorkClaimed).attempt
        renewals = [k for k in kids if k.is_a(WorkRenewed) and k.decode(WorkRenewed).attempt == n]
        if latest.decode(WorkClaimed).worker == ctx.worker:
            return Claim(latest)
        table = await ctx.store.lease_expiry(work.id, n) if isinstance(ctx.store, LeaseTable) else None
        if not lease_expired(latest, renewals, await store_clock(ctx.store), table):
            return Claim(None)
        attempt = n + 1
    now = await store_clock(ctx.store)
    ev = make_event(
        work.run_id,
        WorkClaimed(attempt=attempt, worker=ctx.worker, lease_s=ctx.lease_s, expires_at=now + ctx.lease_s),
        cause=work,
        key=f"claim/{attempt}",
    )
    stored = await append_once(ctx.store, [ev, *with_claim])
    if stored is None and with_claim:
        # The claim lost, or an extra was recorded differently before (a resume under another
        # scanner): try the claim alone, as if the extra had been appended on its own.
        stored = await append_once(ctx.store, [ev])
    if stored is None or stored[0].decode(WorkClaimed).worker != ctx.worker:
        return Claim(None)
    if isinstance(ctx.store, LeaseTable):
        await ctx.store.lease_renew(work, attempt, ctx.worker, _HOST, ctx.lease_s)
        await _seen(ctx, ctx.store)
    return Claim(stored[0])


@asynccontextmanager
async def hold_lease(ctx: AgentContext, work: Event, claim: Event) -> AsyncIterator[None]:
    """Renew the lease every third of its length while the body runs."""
    attempt = claim.decode(WorkClaimed).attempt

    async def renew_row(store: LeaseTable) -> None:
        while True:
            await anyio.sleep(ctx.lease_s / 3)
            await store.lease_renew(work, attempt, ctx.worker, _HOST, ctx.lease_s)
            await _seen(ctx, store)

    async def renew() -> None:
        if isinstance(ctx.store, LeaseTable):
            await renew_row(ctx.store)
            return
        i = 0
        while True:
            await anyio.sleep(ctx.lease_s / 3)
            ev = make_event(
                work.run_id,
                WorkRenewed(attempt=attempt, worker=ctx.worker, expires_at=time.time() + ctx.lease_s),
                cause=work,
                key=f"renew/{attempt}/{i}",
            )
            await append_once(ctx.store, [ev])
            i += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(renew)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
