"""Finding and loading a recorded run for inspection (audit, lineage, report, diff).

Inspection must work on a damaged log too: a payload edited into invalid JSON makes the store's
reader raise, so ``load_run`` falls back to reading the SQLite rows one by one and names the
unreadable events instead of failing as a whole.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog

from events.model import Event, stored_event
from outcome import UsageError
from store.base import EventStore

__all__ = ("RunLog", "UnknownRun", "UnreadableEvent", "load_run", "resolve_run")

log = structlog.get_logger("replay.inspect")


class UnknownRun(UsageError, LookupError):
    """No run (or more than one run) matches what was asked for (exit 2)."""


@dataclass(frozen=True)
class UnreadableEvent:
    seq: int
    id: str
    reason: str


@dataclass
class RunLog:
    """One run's events in log order, plus any rows that could not be decoded."""

    run_id: str
    events: list[Event]
    unreadable: list[UnreadableEvent] = field(default_factory=list)


async def resolve_run(store: EventStore, spec: str) -> str:
    """A run id from ``"latest"``, a full id or a unique prefix of one."""
    ids = await store.run_ids()
    if not ids:
        raise UnknownRun("the store holds no runs yet")
    if spec in ("latest", "last"):
        return ids[-1]
    if spec in ids:
        return spec
    matches = [r for r in ids if r.startswith(spec)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownRun(f"no run id starts with {spec!r} (runs: {', '.join(ids[-5:])})")
    raise UnknownRun(f"{spec!r} is ambiguous: {len(matches)} runs match ({', '.join(matches[:5])})")


async def load_run(store: EventStore, run_id: str) -> RunLog:
    """All of a run's events; undecodable rows (tampered payload JSON) are named, not fatal."""
    try:
        return RunLog(run_id, await store.read(run_id))
    except ValueError as exc:  # json.JSONDecodeError from a row whose payload is not JSON
        path = getattr(store, "path", None)
        if path is None:
            raise
        log.warning("inspect.unreadable_rows", run_id=run_id, error=str(exc))
        return await anyio.to_thread.run_sync(_read_rows_raw, str(path), run_id)


def _read_rows_raw(path: str, run_id: str) -> RunLog:
    """Read a run row by row from the SQLite file (read-only), keeping what decodes."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        rows = conn.execute(
            "SELECT seq, id, run_id, type, version, causation_id, key, payload, prev_hash, hash"
            " FROM events WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
    finally:
        conn.close()
    out = RunLog(run_id, [])
    for row in rows:
        try:
            payload: Any = json.loads(row[7])
            if not isinstance(payload, dict):
                raise ValueError("payload is not a JSON object")
        except ValueError as exc:
            out.unreadable.append(UnreadableEvent(row[0], row[1], f"payload is not valid JSON: {exc}"))
            continue
        out.events.append(
            stored_event(
                seq=row[0],
                id=row[1],
                run_id=row[2],
                type=row[3],
                version=row[4],
                causation_id=row[5],
                key=row[6],
                payload=payload,
                prev_hash=row[8],
                hash=row[9],
            )
        )
    return out
