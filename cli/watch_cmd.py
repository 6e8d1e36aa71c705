"""``stop watch RUN``: the live progress view of a run started elsewhere; read-only."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from agents.progress import follow_progress
from cli.common import add_store, open_store_arg
from outcome import Status, UsageError, exit_code_for

__all__ = ("register",)


async def _resolve(store: Any, ref: str) -> str:
    ids = await store.run_ids()
    if ref == "latest" and ids:
        return str(ids[-1])
    matches = [r for r in ids if r.startswith(ref)]
    if len(matches) != 1:
        raise UsageError(f"{'no' if not matches else 'more than one'} run matches {ref!r} (see stop runs)")
    return str(matches[0])


def cmd_watch(args: argparse.Namespace) -> int:
    async def main() -> str:
        store = await open_store_arg(args.store, create=False, readonly=True)
        try:
            run_id = await _resolve(store, args.run)
            print(f"stop: watching run {run_id} (store {args.store}; Ctrl-C to stop watching)", file=sys.stderr)
            prog = await follow_progress(store, run_id, stream=sys.stderr, details=True, stop_at_end=True)
            return prog.status
        finally:
            await store.aclose()

    status = anyio.run(main)
    return int(exit_code_for(Status(status)))


def register(sub: Any) -> None:
    p = sub.add_parser(
        "watch",
        help="live progress of a run started elsewhere (read-only); exits with the run's outcome",
        description="Follow a run's log: generation k of T, sessions and batches, LM calls, tokens "
        "and cost, failures, the latest decisions, errors and sandbox violations. Writes nothing. "
        "Exits when the run ends, with its exit code (0 finished, 1 failed or budget exhausted), "
        "or on Ctrl-C (130).",
    )
    p.add_argument("run", help="run id, unique prefix, or 'latest'")
    add_store(p)
    p.set_defaults(func=cmd_watch)
