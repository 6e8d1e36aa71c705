"""Alerts for unattended runs: a command run with a small JSON document on standard input.

Set by ``--notify CMD`` (with ``--notify-stall-s S``, ``--notify-timeout-s S``) or by the run
config's ``notify`` table (``command``, ``stall_s``, ``timeout_s``); the flags win. The table is
operational, like a terminal: it is not part of the run's recorded config (so a webhook URL
never enters the log, and changing it changes neither the run's id nor its replay).

Each kind of alert fires once per run, in the order things happen:

==================== ===========================================================================
``finished``         the run ended with ``run.finished``
``failed``           the run ended with ``run.failed``
``budget_exhausted`` the run stopped at a spend cap (``stop resume RUN --max-... HIGHER``)
``interrupted``      the run was stopped by a signal (Ctrl-C, SIGTERM, SIGHUP); resumable
``stalled``          no event for ``stall_s`` seconds (again only after events came and stopped)
``spend_80``         LM spend crossed 80% of a cap (cost, tokens or calls; once per cap value)
``violation``        the first sandbox violation recorded (later ones: ``progress.violations``)
==================== ===========================================================================

The document (one JSON object, then a newline)::

    {"event": "finished", "run_id": "self-improve-97db281525-0", "command": "self-improve",
     "status": "finished", "message": "run self-improve-97db281525-0 finished",
     "at": "2026-12-02T01:02:03Z", "detail": {...}, "progress": {...RunProgress.to_json()...}}

``detail`` holds what the kind is about: ``{"cap", "spent", "limit"}`` for ``spend_80``,
``{"violations"}`` for ``violation``, ``{"silent_s"}`` for ``stalled``, ``{"errors"}`` for the ends.

The command runs under ``sh -c`` in its own process group. It gets ``timeout_s`` seconds
(default 10); then its whole group is killed. A failing, hanging or missing command is logged
(``notify.failed``) and never breaks or holds up the run beyond that timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog

from agents.progress import RunProgress
from events.model import Event
from outcome import ConfigError
from store.base import EventStore

__all__ = ("KINDS", "Notify", "notify_document", "notify_from_config", "run_notifier", "send")

log = structlog.get_logger("notify")

KINDS = ("finished", "failed", "budget_exhausted", "interrupted", "stalled", "spend_80", "violation")
_CAP_NAMES = {"cost_usd": "max_cost_usd", "tokens": "max_tokens_total", "calls": "max_lm_calls"}


@dataclass(frozen=True)
class Notify:
    """Where alerts go: the command, the silence (seconds) that counts as a stall, and how long
    the command may take."""

    cmd: str
    stall_s: float = 1800.0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.cmd, str) or not self.cmd.strip():
            raise ConfigError("notify.command must be a non-empty shell command")
        for name in ("stall_s", "timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ConfigError(f"notify.{name} must be a positive number of seconds, got {v!r}")


def notify_from_config(
    path: str | None, *, cmd: str | None = None, stall_s: float | None = None, timeout_s: float | None = None
) -> Notify | None:
    """The alert settings: the config file's ``notify`` table, overridden by the flags given."""
    section: Mapping[str, Any] = {}
    if path is not None:
        p = Path(path)
        raw = p.read_bytes()  # load_config has read and checked this file already
        data = tomllib.loads(raw.decode("utf-8")) if p.suffix.lower() == ".toml" else json.loads(raw)
        found = data.get("notify") if isinstance(data, Mapping) else None
        if found is not None and not isinstance(found, Mapping):
            raise ConfigError(f"notify must be a table/mapping, got {type(found).__name__}")
        section = found or {}
        unknown = sorted(set(section) - {"command", "stall_s", "timeout_s"})
        if unknown:
            raise ConfigError(f"unknown notify key(s) {unknown}; allowed: command, stall_s, timeout_s")
    command = cmd if cmd is not None else section.get("command")
    if command is None:
        return None
    return Notify(
        command,
        stall_s=stall_s if stall_s is not None else section.get("stall_s", 1800.0),
        timeout_s=timeout_s if timeout_s is not None else section.get("timeout_s", 10.0),
    )


def notify_document(
    event: str, prog: RunProgress, message: str, detail: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "event": event,
        "run_id": prog.run_id,
        "command": prog.command,
        "status": "interrupted" if event == "interrupted" else prog.status,
        "message": message,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "detail": dict(detail or {}),
        "progress": prog.to_json(),
    }


async def send(notify: Notify, doc: Mapping[str, Any]) -> bool:
    """Run the command with ``doc`` on stdin; True if it exited 0 within its time.

    Shielded (an interrupted run still gets its alert) and bounded by ``notify.timeout_s``."""
    data = (json.dumps(doc, sort_keys=True) + "\n").encode("utf-8")
    kind = doc.get("event")
    with anyio.CancelScope(shield=True):
        try:
            proc = await anyio.open_process(
                ["sh", "-c", notify.cmd],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own group: a timeout kills whatever it started
            )
        except OSError as e:
            log.warning("notify.failed", alert=kind, error=str(e))
            return False
        tail, drained = bytearray(), anyio.Event()
        rc: int | None = None
        async with proc:
            with anyio.move_on_after(notify.timeout_s):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_drain, proc, tail, drained)
                    await _feed(proc, data)
                    rc = await proc.wait()
                    with anyio.move_on_after(1.0):  # what it said, unless a child still holds stderr
                        await drained.wait()
                    tg.cancel_scope.cancel()
            if rc is None:
                _kill_group(proc)
                await proc.wait()
                log.warning("notify.failed", alert=kind, error=f"timed out after {notify.timeout_s:g} s; killed")
                return False
    if rc != 0:
        log.warning("notify.failed", alert=kind, rc=rc, stderr=tail.decode("utf-8", "replace")[-300:])
        return False
    log.info("notify.sent", alert=kind)
    return True


async def _feed(proc: anyio.abc.Process, data: bytes) -> None:
    if proc.stdin is None:
        return
    try:
        await proc.stdin.send(data)
        await proc.stdin.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the command does not read its input: its business


async def _drain(proc: anyio.abc.Process, tail: bytearray, drained: anyio.Event) -> None:
    try:
        if proc.stderr is not None:
            async for chunk in proc.stderr:
                tail += chunk
                del tail[:-2000]
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        drained.set()


def _kill_group(proc: anyio.abc.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def run_notifier(store: EventStore, run_id: str, notify: Notify) -> None:
    """Follow the run and alert; returns once the run's end was alerted. Cancelled before that
    (the run was interrupted), it sends ``interrupted`` and re-raises."""
    prog = RunProgress()
    seq = 0
    for ev in await store.read(run_id):  # the past (a resumed run's) is known, not news
        prog.add(ev)
        seq = max(seq, ev.seq or 0)
    prog.go_live(time.time())
    alerts = _Alerts(notify, prog, run_id, seen_violations=len(prog.violations))
    try:
        await _follow(store, run_id, seq, alerts)
    except anyio.get_cancelled_exc_class():
        if not alerts.ended:
            await alerts.fire("interrupted", f"run {run_id} interrupted; continue it with: stop resume {run_id}")
        raise


class _Alerts:
    def __init__(self, notify: Notify, prog: RunProgress, run_id: str, *, seen_violations: int) -> None:
        self.notify, self.prog, self.run_id = notify, prog, run_id
        self.seen_violations = seen_violations
        self.warned: set[tuple[str, float]] = set()
        self.violation_sent = False
        self.ended = False

    async def fire(self, kind: str, message: str, **detail: Any) -> None:
        await send(self.notify, notify_document(kind, self.prog, message, detail))

    async def after(self, ev: Event) -> None:
        prog = self.prog
        prog.add(ev, time.time())
        if len(prog.violations) > self.seen_violations and not self.violation_sent:
            self.violation_sent = True
            new = prog.violations[self.seen_violations :]
            await self.fire("violation", f"run {self.run_id}: sandbox violation {new[0]}", violations=new)
        self.seen_violations = len(prog.violations)
        spent = {"cost_usd": prog.cost_usd, "tokens": float(prog.tokens), "calls": float(prog.lm_calls)}
        for name, limit in sorted(prog.caps.items()):
            if limit > 0 and spent[name] >= 0.8 * limit and (name, limit) not in self.warned:
                self.warned.add((name, limit))
                cap = _CAP_NAMES[name]
                msg = f"run {self.run_id}: spent {spent[name]:g} of {cap}={limit:g} ({100 * spent[name] / limit:.0f}%)"
                await self.fire("spend_80", msg, cap=cap, spent=spent[name], limit=limit)
        if prog.ended and not self.ended:
            self.ended = True
            last = prog.errors[-1]["message"] if prog.errors and prog.status != "finished" else ""
            msg = f"run {self.run_id} {prog.status}" + (f": {last}" if last else "")
            await self.fire(prog.status, msg, errors=prog.errors[-5:])


async def _follow(store: EventStore, run_id: str, after: int, alerts: _Alerts) -> None:
    send_ev, recv_ev = anyio.create_memory_object_stream[Event](1000)

    async def pump() -> None:
        async with send_ev:
            async for ev in store.subscribe(run_id, after=after):
                await send_ev.send(ev)

    stall_s = alerts.notify.stall_s
    async with anyio.create_task_group() as tg:
        tg.start_soon(pump)
        stalled = False
        async with recv_ev:
            while not alerts.ended:
                ev: Event | None = None
                with anyio.move_on_after(stall_s):
                    ev = await recv_ev.receive()
                if ev is None:
                    if not stalled:
                        stalled = True
                        msg = f"run {run_id}: no event for {stall_s:g} s (stalled?)"
                        await alerts.fire("stalled", msg, silent_s=stall_s)
                    continue
                stalled = False
                await alerts.after(ev)
        tg.cancel_scope.cancel()
