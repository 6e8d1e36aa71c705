"""``stop serve``: the read-only live web dashboard of a store (see :mod:`dashboard`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from cli.common import DEFAULT_STORE
from outcome import ExitCode

__all__ = ("register",)

DESCRIPTION = """\
A local web dashboard of the store, live: pages update as events are appended (server-sent
events from the store's subscription; a reconnecting browser resumes after the last event it
saw), without reloading. It only reads: the store is opened read-only and nothing is written.

pages:
  /                 the runs: status, model, cost, tokens, LM calls, age, last activity
  /run/RUN          graphical lineage tree (colour = utility, adopted path, failed nodes with
                    their error), meta-utility per generation, cost and tokens per generation,
                    violations, reward-hacking flags, failed sessions with their errors
  /run/RUN/node/ID  a node's program, its diff against its parent, its utilities per split
                    and per-instance outcomes, the LM exchange (prompts, replies) that made it
  /diff/A/B         two runs side by side and their first divergence (as `stop diff`)

Bound to 127.0.0.1 by default. Binding to any other address (--host 0.0.0.0) requires an
access token: --token, or one is generated and printed. The page asks for it once (a cookie
keeps it); ?token=T in the address or "Authorization: Bearer T" work too. Nothing is loaded
from the network: the CSS and JS are served by the dashboard itself.
"""


def cmd_serve(args: argparse.Namespace) -> int:
    from dashboard.server import ServeOptions, serve

    try:
        anyio.run(serve, ServeOptions(store=args.store, host=args.host, port=args.port, token=args.token))
    except KeyboardInterrupt:
        # Ctrl-C is how a dashboard is stopped: say so, and exit as every command does on that
        # signal (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
        print("stop: dashboard stopped", file=sys.stderr)
        exit_code = getattr(args, "interrupt_exit_code", None)
        return int(exit_code()) if callable(exit_code) else int(ExitCode.INTERRUPTED)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="read-only live web dashboard of a store (runs, lineage tree, costs, diffs)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 130 on Ctrl-C (the normal way to stop it; 143 on SIGTERM, 129 on SIGHUP), 2 no such store, 3 the port is taken.",
    )
    p.add_argument(
        "--store",
        default=DEFAULT_STORE,
        metavar="PATH|URL",
        help=f"the store to show: a SQLite file (default {DEFAULT_STORE}) or a postgresql:// URL;"
        " opened read-only, it must exist",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument(
        "--token",
        metavar="T",
        help="access token every request must carry (required beyond loopback: generated and printed if not given)",
    )
    p.set_defaults(func=cmd_serve)
