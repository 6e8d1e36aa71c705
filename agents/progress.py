"""Progress on stderr while a run works: counts of the work the log shows, one line."""

from __future__ import annotations

import sys
from collections import Counter
from typing import TextIO

import anyio

from store.base import EventStore

__all__ = ("report_progress",)

_COUNTED = {
    "generation.started": "gen",
    "session.requested": "sessions",
    "session.completed": "done",
    "lm.responded": "lm",
    "sandbox.batch.completed": "batches",
    "utility.evaluated": "utilities",
    "budget.exceeded": "refused",
}


async def report_progress(
    store: EventStore, run_id: str, *, stream: TextIO | None = None, every_s: float = 1.0
) -> None:
    out = stream or sys.stderr
    tty = out.isatty()
    counts: Counter[str] = Counter()
    last = ""
    last_print = anyio.current_time()

    def line() -> str:
        parts = [f"{label} {counts[t]}" for t, label in _COUNTED.items() if counts[t] or t == "session.requested"]
        return "stop: " + ", ".join(parts)

    try:
        async for ev in store.subscribe(run_id, types=set(_COUNTED)):
            counts[ev.type] += 1
            now = anyio.current_time()
            text = line()
            if text != last and now - last_print >= (every_s if tty else 5 * every_s):
                print(("\r" + text) if tty else text, end="" if tty else "\n", file=out, flush=True)
                last, last_print = text, now
    finally:
        if tty and last:
            print(file=out, flush=True)
