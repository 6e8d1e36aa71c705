"""Options and output helpers shared by the run commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from agents.config import RunConfig
from agents.notify import Notify, notify_from_config
from agents.run_status import RunOutcome, run_outcome
from agents.session import RunRequest, start_and_run
from events import Event
from events.signing import signer_from_env
from events.types import RunFailed, RunFinished
from outcome import Status, UsageError
from store import open_store
from store.factory import DurableStore

__all__ = (
    "DEFAULT_STORE",
    "add_notify_options",
    "add_run_options",
    "add_spend_caps",
    "add_store",
    "emit_json",
    "execute_run",
    "fmt",
    "notify_settings",
    "open_store_arg",
    "read_program",
    "read_text_arg",
    "report_interrupted",
    "report_outcome",
    "spend_caps",
)

DEFAULT_STORE = "runs/stop.db"


def add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=DEFAULT_STORE,
        metavar="PATH|URL",
        help=f"the event log: a SQLite file (default {DEFAULT_STORE}, created on first use) or"
        " postgresql://user@host[:port]/db shared by many machines (password from PGPASSWORD or ~/.pgpass)",
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    add_store(p)
    p.add_argument(
        "--seed", type=int, default=0, help="run seed: every random choice derives from it and the log (default 0)"
    )
    p.add_argument("--config", metavar="FILE", help="run config (JSON or TOML): budgets, tasks, LM, sandbox")
    p.add_argument(
        "--model", help="LM model name (an OpenAI-compatible endpoint from OPENAI_BASE_URL / OPENAI_API_KEY)"
    )
    p.add_argument("--json", action="store_true", help="print a machine-readable summary (with run_id) on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    add_spend_caps(p)
    add_notify_options(p)
    p.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="DEVELOPMENT ONLY: run untrusted code without isolation (recorded in the run's events)",
    )


def add_notify_options(p: argparse.ArgumentParser) -> None:
    """Alerts (agents.notify); the config's ``notify`` table sets the same, the flags win."""
    g = p.add_argument_group("alerts (also the config's notify table: command, stall_s, timeout_s)")
    g.add_argument(
        "--notify",
        metavar="CMD",
        help="run CMD (sh -c) with a JSON document on stdin when the run finishes, fails, is "
        "interrupted, stalls, crosses 80%% of a spend cap or records a sandbox violation",
    )
    g.add_argument(
        "--notify-stall-s",
        type=float,
        metavar="S",
        help="no event for S seconds counts as a stall (default 1800)",
    )
    g.add_argument(
        "--notify-timeout-s",
        type=float,
        metavar="S",
        help="CMD is killed after S seconds, and the run goes on (default 10)",
    )


def notify_settings(args: argparse.Namespace) -> Notify | None:
    """``--notify*`` over the config file's ``notify`` table (None: no alerts)."""
    return notify_from_config(
        getattr(args, "config", None),
        cmd=getattr(args, "notify", None),
        stall_s=getattr(args, "notify_stall_s", None),
        timeout_s=getattr(args, "notify_timeout_s", None),
    )


def add_spend_caps(p: argparse.ArgumentParser) -> None:
    """Whole-run spend caps (config keys of the same names; ``stop resume`` raises them)."""
    g = p.add_argument_group("spend caps (whole run; committed spend never crosses them)")
    g.add_argument("--max-cost-usd", type=float, metavar="USD", help="stop the run before it can spend more USD")
    g.add_argument(
        "--max-tokens-total", type=int, metavar="N", help="stop before the run's prompt+completion tokens pass N"
    )
    g.add_argument("--max-lm-calls", type=int, metavar="N", help="stop before the run makes more than N LM requests")


def spend_caps(args: argparse.Namespace) -> dict[str, Any]:
    """The caps given on the command line (None: not given)."""
    return {
        "max_cost_usd": getattr(args, "max_cost_usd", None),
        "max_tokens_total": getattr(args, "max_tokens_total", None),
        "max_lm_calls": getattr(args, "max_lm_calls", None),
    }


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


async def open_store_arg(path: str, *, create: bool, readonly: bool = False) -> DurableStore:
    """A SQLite path or a ``postgresql://`` URL (``store.open_store`` chooses); ``readonly`` for
    commands that only read (they never write, and refuse a missing or empty store)."""
    return await open_store(path, create=create, readonly=readonly)


def read_program(path: str | Path, what: str = "file") -> str:
    """A program (or other text) file the user named: UTF-8, a leading BOM dropped as Python does.

    Unreadable, missing or non-UTF-8 files are a ``UsageError`` naming the file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror or e}") from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{what} {path} is not UTF-8 text (byte {e.start}: {e.reason})", hint="save the file as UTF-8"
        ) from e


async def read_text_arg(path: str | Path, what: str = "file") -> str:
    return await anyio.to_thread.run_sync(read_program, path, what)


def fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


Prepare = Callable[[DurableStore, dict[str, Any]], Awaitable[None]]


def report_outcome(
    args: argparse.Namespace,
    run_id: str,
    command: str,
    final: Event,
    outcome: RunOutcome,
    render: Callable[[dict[str, Any]], None] | None,
    **extra: Any,
) -> int:
    """Print how a run ended (the table or ``--json``, then why it failed) and return its exit code."""
    ok = final.is_a(RunFinished)
    if ok:
        summary: dict[str, Any] = final.decode(RunFinished).summary
    else:
        failed = final.try_decode(RunFailed)
        summary = {"error": failed.error if failed is not None else None}
    if getattr(args, "json", False):
        emit_json(
            {
                "run_id": run_id,
                "command": command,
                **extra,
                "status": str(outcome.status),
                "reason": outcome.reason,
                "errors": [e.to_json() for e in outcome.errors],
                "summary": summary,
            }
        )
    elif ok and render is not None:
        render(summary)
    if outcome.status != Status.FINISHED:
        print(f"stop: run {run_id} {outcome.status}: {outcome.reason}", file=sys.stderr)
        for err in outcome.errors:
            if err.where != "lm":  # LM failures are repeated in the session that saw them
                print(f"  {err.render()}", file=sys.stderr)
    elif outcome.errors:
        print(f"stop: run {run_id} finished with {len(outcome.errors)} failure(s) on the way:", file=sys.stderr)
        for err in outcome.errors:
            if err.where != "lm":
                print(f"  {err.render()}", file=sys.stderr)
    return int(outcome.exit_code)


def report_interrupted(args: argparse.Namespace, run_id: str | None, command: str) -> None:
    """An interrupted run: say how to continue it, and keep the ``--json`` contract."""
    if run_id is None:
        return
    print(
        f"stop: run {run_id} interrupted; continue it with: stop resume {run_id} --store {args.store}", file=sys.stderr
    )
    if getattr(args, "json", False):
        emit_json(
            {
                "run_id": run_id,
                "command": command,
                "status": str(Status.INTERRUPTED),
                "reason": "interrupted before it ended; `stop resume` continues it",
                "errors": [],
                "summary": {},
            }
        )


def execute_run(
    args: argparse.Namespace,
    command: str,
    config: RunConfig,
    options: dict[str, Any],
    render: Callable[[dict[str, Any]], None],
    *,
    prepare: Prepare | None = None,
) -> int:
    """Record a new run, work on it to its end, print the summary (table or ``--json``)."""
    run_ids: list[str] = []
    signer_from_env()  # a bad STOP_SIGNING_KEY is refused before the store is created

    async def main() -> tuple[Event, RunOutcome]:
        store = await open_store_arg(args.store, create=True)
        try:
            if prepare is not None:
                await prepare(store, options)

            async def started(run_id: str) -> None:
                run_ids.append(run_id)
                print(f"stop: run {run_id} (store {args.store})", file=sys.stderr)

            final = await start_and_run(
                store,
                RunRequest(command, args.seed, config, options),
                progress=not args.no_progress,
                on_started=started,
                notify=notify_settings(args),
            )
            return final, await run_outcome(store, run_ids[0], final)
        finally:
            with anyio.CancelScope(shield=True):
                await store.aclose()

    try:
        final, outcome = anyio.run(main)
    except KeyboardInterrupt:
        report_interrupted(args, run_ids[0] if run_ids else None, command)
        raise
    return report_outcome(args, run_ids[0], command, final, outcome, render)
