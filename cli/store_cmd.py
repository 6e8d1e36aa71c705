"""``stop store copy SRC DST [--run RUN]``: move runs between SQLite files and PostgreSQL.

Exit codes: 0 copied and verified; 1 a verification failed (broken source chain, a chain,
blob or cache row that differs in the destination); 2 usage (no such store or run, a URL with
a password, a conflicting event already in the destination).
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from cli.common import emit_json
from replay.runs import resolve_run
from replay.store_copy import RunCopy, copy_run
from store import describe_store, open_store

__all__ = ("register",)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("store", help="manage stores: copy runs between SQLite and PostgreSQL")
    sub = p.add_subparsers(dest="store_command", metavar="SUBCOMMAND", required=True)
    c = sub.add_parser(
        "copy",
        help="copy runs (events, blobs, LM cache rows) from one store to another and verify the copy",
        description="Copies every run of SRC (or only --run) to DST: the events under their ids (DST "
        "rebuilds the same hash chain), the blobs they refer to and the LM cache rows they name, so "
        "the copy replays offline exactly like the original. Then DST is verified: chain hash for "
        "hash, blobs against their addresses, cache rows equal. SRC and DST are SQLite paths or "
        "postgresql://user@host[:port]/db URLs (password from PGPASSWORD or ~/.pgpass). Copying "
        "again is a no-op. Exit 1 if a verification fails.",
    )
    c.add_argument("src", metavar="SRC", help="source store (SQLite path or postgresql:// URL)")
    c.add_argument("dst", metavar="DST", help="destination store (created if missing)")
    c.add_argument("--run", help="only this run (id, unique prefix or 'latest'); default every run")
    c.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    c.set_defaults(func=cmd_copy)


def cmd_copy(args: argparse.Namespace) -> int:
    async def main() -> list[RunCopy]:
        async with await open_store(args.src, create=False, readonly=True) as src:
            runs = [await resolve_run(src, args.run)] if args.run else await src.run_ids()
            async with await open_store(args.dst, create=True) as dst:
                return [await copy_run(src, dst, run_id) for run_id in runs]

    results = anyio.run(main)
    ok = all(r.ok for r in results)
    if args.json:
        emit_json(
            {
                "src": describe_store(args.src),
                "dst": describe_store(args.dst),
                "ok": ok,
                "runs": [r.to_json() for r in results],
            }
        )
    else:
        for r in results:
            state = "verified" if r.ok else "NOT VERIFIED"
            print(f"{r.run_id}: {r.events} events, {r.blobs} blobs, {r.cache_rows} cache rows; {state}")
            for problem in r.problems:
                print(f"  {problem}")
        print(f"copied {len(results)} run(s) from {describe_store(args.src)} to {describe_store(args.dst)}")
    return 0 if ok else 1
