"""Who is working on a store: workers seen, their hosts, their live leases (``stop runs --workers``)."""

from __future__ import annotations

from typing import Any

from agents.claims import store_clock
from events.stop_events import (
    LMFailed,
    LMResponded,
    SandboxBatchCompleted,
    SessionCompleted,
    WorkClaimed,
    WorkRenewed,
)
from store.base import EventStore

__all__ = ("workers_report",)


async def workers_report(store: EventStore) -> list[dict[str, Any]]:
    """From the worker and lease tables where the store keeps them (PostgreSQL, by the database's
    clock), else from the claims in the log (SQLite, by this host's clock)."""
    table = getattr(store, "workers", None)
    if table is not None:
        rows: list[dict[str, Any]] = await table()
        return rows
    now = await store_clock(store)
    seen: dict[str, dict[str, Any]] = {}
    claims = await store.read(types={WorkClaimed.TYPE, WorkRenewed.TYPE})
    expiry: dict[tuple[str, int], tuple[str, float, str]] = {}
    for ev in claims:
        lease = ev.decode(WorkClaimed) if ev.is_a(WorkClaimed) else ev.decode(WorkRenewed)
        worker = lease.worker
        agent, _, where = worker.partition("@")
        host = where.rpartition(":")[0]
        host, _, pid = host.rpartition(":")
        seen.setdefault(worker, {"worker": worker, "agent": agent, "host": host, "pid": int(pid or 0)})
        k = (ev.causation_id or "", lease.attempt)
        prior = expiry.get(k)
        expires = max(lease.expires_at, prior[1] if prior else 0.0)
        expiry[k] = (worker, expires, ev.run_id)
    done_types = {SandboxBatchCompleted.TYPE, SessionCompleted.TYPE, LMResponded.TYPE, LMFailed.TYPE}
    for (work_id, attempt), (worker, expires, run_id) in expiry.items():
        if expires <= now:
            continue
        if any(k.type in done_types for k in await store.children(work_id)):
            continue
        seen[worker].setdefault("live_leases", []).append(
            {"work_id": work_id, "attempt": attempt, "run_id": run_id, "expires_in_s": round(expires - now, 1)}
        )
    for row in seen.values():
        row.setdefault("live_leases", [])
    return list(seen.values())
