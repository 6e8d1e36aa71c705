"""Alerts for unattended runs: ``--notify CMD`` runs CMD with a small JSON document on stdin.

Fired when the run finishes, fails, stalls (no event for ``stall_s`` seconds), crosses 80% of a
spend cap, or records a sandbox violation. The document::

    {"event": "finished|failed|budget_exhausted|stalled|spend_80|violation",
     "run_id": "...", "command": "self-improve", "status": "...", "message": "...",
     "progress": {...RunProgress.to_json()...}}

CMD is run by the shell (``sh -c``), e.g. ``notify-send STOP "$(jq -r .message)"`` or
``curl -s -X POST -H 'content-type: application/json' --data-binary @- https://hooks.example/...``.
Its failure is logged, never fatal to the run.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from agents.progress import RunProgress
from events.model import Event
from store.base import EventStore

__all__ = ("notify_document", "run_notifier", "send")

log = structlog.get_logger("notify")


def notify_document(event: str, prog: RunProgress, message: str) -> dict[str, Any]:
    return {
        "event": event,
        "run_id": prog.run_id,
        "command": prog.command,
        "status": prog.status,
        "message": message,
        "progress": prog.to_json(),
    }


async def send(cmd: str, doc: dict[str, Any]) -> None:
    data = json.dumps(doc, sort_keys=True).encode("utf-8")
    try:
        with anyio.CancelScope(shield=True), anyio.fail_after(30):
            res = await anyio.run_process(["sh", "-c", cmd], input=data, check=False, stderr=subprocess.PIPE)
        if res.returncode != 0:
            log.warning("notify.failed", cmd=cmd, rc=res.returncode, stderr=res.stderr.decode()[-300:])
    except (OSError, TimeoutError) as e:
        log.warning("notify.failed", cmd=cmd, error=str(e))


async def run_notifier(store: EventStore, run_id: str, cmd: str, *, stall_s: float = 1800.0) -> None:
    """Follow the run and notify; returns after the run's end was notified."""
    send_ev, recv_ev = anyio.create_memory_object_stream[Event](100)

    async def pump() -> None:
        async with send_ev:
            async for ev in store.subscribe(run_id):
                await send_ev.send(ev)

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump)
        async with recv_ev:
            await _watch(recv_ev, run_id, cmd, stall_s)
        tg.cancel_scope.cancel()


async def _watch(events: MemoryObjectReceiveStream[Event], run_id: str, cmd: str, stall_s: float) -> None:
    prog = RunProgress()
    seen_violations = 0
    warned_spend = False
    stalled = False
    while True:
        ev: Event | None = None
        with anyio.move_on_after(stall_s):
            ev = await events.receive()
        if ev is None:
            if not stalled:
                stalled = True
                await send(cmd, notify_document("stalled", prog, f"run {run_id}: no event for {stall_s:g} s"))
            continue
        stalled = False
        prog.add(ev)
        if len(prog.violations) > seen_violations:
            seen_violations = len(prog.violations)
            msg = f"run {run_id}: sandbox violation {prog.violations[-1]}"
            await send(cmd, notify_document("violation", prog, msg))
        cap = prog.caps.get("cost_usd")
        if cap and not warned_spend and prog.cost_usd >= 0.8 * cap:
            warned_spend = True
            msg = f"run {run_id}: spent ${prog.cost_usd:.4f} of ${cap:g}"
            await send(cmd, notify_document("spend_80", prog, msg))
        if prog.ended:
            last = prog.errors[-1]["message"] if prog.errors and prog.status != "finished" else ""
            msg = f"run {run_id} {prog.status}" + (f": {last}" if last else "")
            await send(cmd, notify_document(prog.status, prog, msg))
            return
