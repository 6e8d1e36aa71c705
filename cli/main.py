"""``stop``: the command line. Each area registers its own subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import inspect_cmd, lm_cmd, repair_cmd, replay_cmd, run_cmd, sandbox_cmd, store_cmd, tasks_cmd
from cli.logs import configure_logging

__all__ = ("build_parser", "main")

#: Modules that add subcommands with ``register(subparsers)``, in help order.
_COMMAND_MODULES = (run_cmd, repair_cmd, replay_cmd, inspect_cmd, tasks_cmd, sandbox_cmd, lm_cmd, store_cmd)

DESCRIPTION = """\
STOP: a self-taught optimizer. A seed improver asks a language model for better versions of a
program and keeps the best by utility; run on its own source and scored by a meta-utility, it
improves itself over generations. Every fact is an event in one append-only log, so any run can
be replayed offline, audited and resumed. Untrusted code only ever runs in the sandbox.

With no endpoint configured the built-in offline model is used (seeded program mutation,
labelled "offline, no language model"); set OPENAI_API_KEY / OPENAI_BASE_URL or --model to use
an OpenAI-compatible server.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stop", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "pretty"),
        default="auto",
        help="log rendering on stderr (auto: pretty in a terminal, JSON lines otherwise)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log detail (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.verbose)
    handler = getattr(args, "handler", None) or getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; the log keeps everything recorded so far (stop resume RUN)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
