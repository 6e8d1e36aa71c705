"""Run the inspection subcommands in-process, the way ``stop`` dispatches them."""

from __future__ import annotations

import argparse

from cli.inspect_cmd import register
from cli.logs import configure_logging


def run_cli(argv: list[str]) -> int:
    configure_logging("json")  # as ``stop`` does: logs on stderr, results on stdout
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))
