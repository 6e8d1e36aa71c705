"""Options and output helpers shared by the run commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from agents.config import ConfigError
from store import SqliteStore, StoreError

__all__ = ("add_store", "add_run_options", "run_async", "emit_json", "open_store_arg", "DEFAULT_STORE", "fmt")

DEFAULT_STORE = "runs/stop.db"
T = TypeVar("T")


def add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=DEFAULT_STORE, metavar="PATH",
                   help=f"the event log (SQLite file; default {DEFAULT_STORE}, created on first use)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    add_store(p)
    p.add_argument("--seed", type=int, default=0, help="run seed: every random choice derives from it and the log (default 0)")
    p.add_argument("--config", metavar="FILE", help="run config (JSON or TOML): budgets, tasks, LM, sandbox")
    p.add_argument("--model", help="LM model name (an OpenAI-compatible endpoint from OPENAI_BASE_URL / OPENAI_API_KEY)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary (with run_id) on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="DEVELOPMENT ONLY: run untrusted code without isolation (recorded in the run's events)")


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


async def open_store_arg(path: str, *, create: bool) -> SqliteStore:
    return await SqliteStore.open(path, create=create)


def fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def handle_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Clear one-line errors for the failures a user can fix; exit code 2."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (ConfigError, StoreError, LookupError, ValueError) as e:
            print(f"stop: error: {e}", file=sys.stderr)
            return 2

    wrapped.__doc__ = fn.__doc__
    return wrapped
