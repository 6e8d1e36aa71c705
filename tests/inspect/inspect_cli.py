"""Run the inspection subcommands in-process, the way ``stop`` dispatches them."""

from __future__ import annotations

from cli.main import main


def run_cli(argv: list[str]) -> int:
    # As ``stop`` does: logs on stderr (JSON lines), results on stdout; errors by the outcome contract.
    return main(["--log-format", "json", *argv])
