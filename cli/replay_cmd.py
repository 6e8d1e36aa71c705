"""replay, resume and fork: running a recorded run again."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from agents.config import load_config
from agents.run_status import RunOutcome, run_outcome
from agents.session import resume_run
from cli.common import (
    add_notify_options,
    add_spend_caps,
    add_store,
    emit_json,
    notify_settings,
    open_store_arg,
    read_text_arg,
    report_interrupted,
    report_outcome,
    spend_caps,
)
from events import Event
from events.types import RunFailed, RunFinished, RunStarted
from outcome import UsageError
from replay.replayer import ReplayResult, replay_run
from replay.runs import resolve_run

__all__ = ("register",)


def _print_replay(result: ReplayResult) -> None:
    c = result.comparison
    if result.unfinished:
        print(
            f"run {result.run_id} is unfinished (it has no run.finished or run.failed event):"
            f" only its {c.compared} recorded event(s) were compared; continue it with: stop resume {result.run_id}"
        )
    if result.identical:
        print(
            f"identical: {c.compared} events (run {result.run_id})"
            + (" (recorded prefix)" if result.unfinished else "")
        )
        return
    d = c.first
    if d is not None:
        print(f"DIVERGED at {d.type} {d.event_id} ({d.kind}); {len(c.divergences)} divergent event(s) in all")
        print("caused by:")
        for step in d.causes:
            print(f"  {step}")
        print(d.diff() or "(no payload on one side)")
    for f in result.flaky:
        print(
            f"flaky utility: {f['task']}/{f['split']} recorded {f['recorded']} replayed {f['replayed']} ({f['event_id']})"
        )


def cmd_replay(args: argparse.Namespace) -> int:
    async def main() -> ReplayResult:
        store = await open_store_arg(args.store, create=False, readonly=True)
        try:
            run_id = await resolve_run(store, args.run)
            improver = await read_text_arg(args.improver, "--improver") if args.improver else None
            config = load_config(args.config) if args.config else None
            print(f"stop: replaying {run_id} (LM answers from the cache only; no network)", file=sys.stderr)
            return await replay_run(
                store,
                run_id,
                re_execute_evaluations=args.re_execute_evaluations,
                improver_text=improver,
                config=config,
                progress=not args.no_progress,
            )
        finally:
            await store.aclose()

    result = anyio.run(main)
    if args.json:
        emit_json(result.to_json())
    else:
        _print_replay(result)
    return 0 if result.identical else 1


def cmd_resume(args: argparse.Namespace) -> int:
    resolved: list[tuple[str, str]] = []

    async def main() -> tuple[str, str, Event, RunOutcome]:
        store = await open_store_arg(args.store, create=False)
        try:
            run_id = await resolve_run(store, args.run)
            first = (await store.read(run_id, limit=1))[0]
            command = first.decode(RunStarted).command
            resolved.append((run_id, command))
            done = await store.children(first.id, {RunFinished.TYPE, RunFailed.TYPE})
            if done:
                final = done[0]
            else:
                print(f"stop: resuming {run_id}", file=sys.stderr)
                final = await resume_run(
                    store, run_id, progress=not args.no_progress, caps=spend_caps(args), notify=notify_settings(args)
                )
            return run_id, command, final, await run_outcome(store, run_id, final)
        finally:
            with anyio.CancelScope(shield=True):
                await store.aclose()

    try:
        run_id, command, final, outcome = anyio.run(main)
    except KeyboardInterrupt:
        report_interrupted(args, *(resolved[0] if resolved else (None, "")))
        raise
    code = report_outcome(args, run_id, command, final, outcome, None)
    if not args.json:
        print(f"run {run_id}: {outcome.status}" + (f": {outcome.reason}" if outcome.reason else ""))
    return code


def cmd_fork(args: argparse.Namespace) -> int:
    from agents.fork import verify_fork_source
    from agents.runinfo import run_info
    from agents.session import RunRequest, start_and_run

    started: list[str] = []
    command: list[str] = []

    async def main() -> tuple[str, Event, str, RunOutcome]:
        store = await open_store_arg(args.store, create=False)
        try:
            source = await resolve_run(store, args.run)
            matches = [e for e in await store.read(source) if e.id.startswith(args.at)]
            if len(matches) != 1:
                raise UsageError(f"--at {args.at!r} matches {len(matches)} events of run {source}; give more of the id")
            at = matches[0]
            info = await run_info(store, source)
            config = load_config(args.config) if args.config else info.config
            config = config.with_overrides(model=args.model)
            await verify_fork_source(store, source, at.seq or 0)
            options = {**info.options, "fork": {"run": source, "at": at.id, "at_seq": at.seq}}
            command.append(info.command)

            async def on_started(run_id: str) -> None:
                started.append(run_id)
                print(f"stop: fork {run_id} of {source} at {at.type} {at.id[:12]}", file=sys.stderr)

            final = await start_and_run(
                store,
                RunRequest(info.command, info.seed, config, options),
                progress=not args.no_progress,
                on_started=on_started,
            )
            return started[0], final, source, await run_outcome(store, started[0], final)
        finally:
            with anyio.CancelScope(shield=True):
                await store.aclose()

    try:
        run_id, final, source, outcome = anyio.run(main)
    except KeyboardInterrupt:
        report_interrupted(args, started[0] if started else None, command[0] if command else "")
        raise
    code = report_outcome(args, run_id, command[0], final, outcome, None, forked_from=source)
    if not args.json:
        print(f"fork {run_id}: {outcome.status}; compare with: stop diff {source} {run_id}")
    return code


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="re-run a recorded run offline and compare every event",
        description="Re-runs a recorded run with LM answers from the cache (strict: a request the "
        "recording never made is an error) and evaluation outcomes from the log, and "
        "compares every event by identity. Prints 'identical: N events' or the first "
        "divergence with both payloads and the chain of causes. Exit 1 on divergence.",
    )
    p.add_argument("run", help="run id, unique prefix, or 'latest'")
    add_store(p)
    p.add_argument(
        "--re-execute-evaluations",
        action="store_true",
        help="also run candidate evaluations again and report utilities that differ (flaky code)",
    )
    p.add_argument(
        "--improver", metavar="FILE", help="replay with this program in place of the run's starting improver"
    )
    p.add_argument("--config", metavar="FILE", help="replay under a changed config")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress view on stderr")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "resume",
        help="continue an interrupted run from its log",
        description="Work that was requested but never answered is requested again under the same "
        "identity; leases of dead workers expire; nothing is lost or done twice.",
    )
    p.add_argument("run", help="run id, unique prefix, or 'latest'")
    add_store(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    add_spend_caps(p)
    add_notify_options(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser(
        "fork",
        help="a new run sharing a recorded run's prefix, going on differently from an event",
        description="LM requests the source asked up to EVENT are asked as the source asked them "
        "(served from the cache); later ones use the fork's --model / --config.",
    )
    p.add_argument("run", help="source run id, unique prefix, or 'latest'")
    p.add_argument("--at", required=True, metavar="EVENT", help="event id (or unique prefix) to cut at")
    p.add_argument("--model", help="LM model for the fork after the cut")
    p.add_argument("--config", metavar="FILE", help="config for the fork (default: the source's)")
    add_store(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_fork)
