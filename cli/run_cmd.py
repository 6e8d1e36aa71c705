"""Run commands: improve, self-improve, transfer, runs, agent."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from agents.config import RunConfig, load_config
from agents.launch import AGENTS, Agents
from agents.session import open_pool, resolve_backend
from agents.workers import workers_report
from cli.common import (
    add_run_options,
    add_store,
    emit_json,
    execute_run,
    fmt,
    open_store_arg,
    read_text_arg,
    spend_caps,
)
from events import Event
from events.stop_events import GenerationStarted, ImproverDecided, SessionCompleted
from events.types import RunFailed, RunFinished, RunStarted
from outcome import UsageError
from store.base import EventStore
from tasks import task_names

__all__ = ("register",)


def _config(args: argparse.Namespace, **overrides: Any) -> RunConfig:
    config = load_config(args.config)
    return config.with_overrides(
        model=args.model,
        unsafe_no_sandbox=True if args.unsafe_no_sandbox else None,
        **spend_caps(args),
        **overrides,
    )


async def _resolve_options(store: EventStore, options: dict[str, Any]) -> None:
    """``improver_ref`` (as the user gave it) becomes ``improver`` (a program hash or None)."""
    if "improver_ref" in options:
        options["improver"] = await _resolve_improver(store, options.pop("improver_ref"))


def _program_of(ev: Event) -> str | None:
    """The program an event names: a generation's improver, a decided candidate, a session's result."""
    if ev.is_a(GenerationStarted):
        return ev.decode(GenerationStarted).improver
    if ev.is_a(ImproverDecided):
        return ev.decode(ImproverDecided).candidate
    return ev.decode(SessionCompleted).solution


async def _resolve_improver(store: EventStore, ref: str | None) -> str | None:
    """``seed`` (or nothing) is the seed improver; a path to a ``.py`` file is stored as a blob
    and used by its hash; otherwise a blob hash or unique prefix from this store's runs."""
    if ref in (None, "seed"):
        return None
    assert ref is not None
    if ref.endswith(".py"):
        text = await read_text_arg(ref, "improver file")
        return await store.put_blob(text.encode("utf-8"))
    for ev in await store.read(types={GenerationStarted.TYPE, ImproverDecided.TYPE, SessionCompleted.TYPE}):
        value = _program_of(ev)
        if value is not None and value.startswith(ref):
            return value
    raise UsageError(
        f"no improver {ref!r} in this store", hint="use a program hash from `stop lineage`, 'seed', or a .py file"
    )


# ---- renderers -----------------------------------------------------------------------------------


def _render_improve(s: dict[str, Any]) -> None:
    print(f"task {s['task']}: improver session {s['session_status']}")
    print(f"{'split':<6} {'before':>8} {'after':>8}")
    for split in ("val", "test"):
        print(f"{split:<6} {fmt(s['before'][split]):>8} {fmt(s['after'][split]):>8}")


def _render_self_improve(s: dict[str, Any]) -> None:
    print(
        f"{'gen':>3}  {'improver':<12} {'meta val':>8} {'meta test':>9}  {'candidate':<12} {'cand val':>8}  adopted  reason"
    )
    for r in s["generations"]:
        print(
            f"{r['generation']:>3}  {r['improver'][:12]:<12} {fmt(r['meta_val']):>8} {fmt(r['meta_test']):>9}  "
            f"{(r.get('candidate') or '-')[:12]:<12} {fmt(r.get('candidate_meta_val')):>8}  "
            f"{'yes' if r['adopted'] else 'no':<7}  {r['reason']}"
        )
    print(f"final improver: {s['final_improver'][:16]}")


def _cell(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return fmt(mean) + (f" ± {fmt(std)}" if std is not None else "")


def _render_transfer(s: dict[str, Any]) -> None:
    runs = int(s.get("runs") or 1)
    what = "mean ± sample std over runs" if runs > 1 else "one run"
    print(
        f"improved improver {s['improver'][:12]}: {runs} run(s) per task and improver (test utility, {what}; val in --json)"
    )
    heads = ("u(seed solution)", "seed improver I0", "improved I_T")
    print((f"{'':<30} " + "  ".join(f"{h:<22}" for h in heads)).rstrip())
    print(f"{'task':<30} " + "  ".join(f"{'ours':<15} {'paper':>6}" for _ in heads))
    for row in s["tasks"]:
        mean, std, paper = row.get("mean"), row.get("std"), row.get("paper") or {}
        cells = []
        for column in ("seed_solution", "seed_improver", "improved_improver"):
            m = mean[column]["test"] if mean else row[column]["test"]
            d = std[column]["test"] if std else None
            p = paper.get(column)
            cells.append(f"{_cell(m, d):<15} {fmt(p) if p is not None else '-':>6}")
        print(f"{row['task']:<30} " + "  ".join(cells))
    if any(row.get("paper") for row in s["tasks"]):
        print(f"paper: {s.get('paper_source', 'the STOP paper, Table 1')}; not run here.")
        other = s.get("paper_other_scale") or []
        if other:
            print(
                f"       its {', '.join(other)} figures come from the reference's scorers, which ours fix: not on our scale."
            )


# ---- handlers ------------------------------------------------------------------------------------


def cmd_improve(args: argparse.Namespace) -> int:
    config = _config(args)
    options = {"task": args.task, "improver_ref": args.improver}
    return execute_run(args, "improve", config, options, _render_improve, prepare=_resolve_options)


def cmd_self_improve(args: argparse.Namespace) -> int:
    config = _config(
        args,
        generations=args.generations,
        tasks=args.tasks,
        runs=args.runs,
        adopt="better" if args.adopt_if_better else None,
    )
    return execute_run(
        args, "self-improve", config, {"improver_ref": args.improver}, _render_self_improve, prepare=_resolve_options
    )


def cmd_transfer(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.runs < 1:
        raise UsageError(f"--runs must be >= 1, got {args.runs}")
    options = {"tasks": list(args.tasks), "improver_ref": args.improver, "runs": args.runs}
    return execute_run(args, "transfer", config, options, _render_transfer, prepare=_resolve_options)


def cmd_runs(args: argparse.Namespace) -> int:
    async def main() -> list[dict[str, Any]]:
        store = await open_store_arg(args.store, create=False, readonly=True)
        try:
            if args.workers:
                return await workers_report(store)
            rows = []
            for run_id in await store.run_ids():
                first = (await store.read(run_id, limit=1))[0]
                end = await store.children(first.id, {RunFinished.TYPE, RunFailed.TYPE})
                head = await store.head(run_id)
                started = first.try_decode(RunStarted)
                rows.append(
                    {
                        "run_id": run_id,
                        "command": started.command if started is not None else None,
                        "seed": started.seed if started is not None else None,
                        "status": end[0].type.split(".")[1] if end else "unfinished",
                        "events": (head.seq or 0) - (first.seq or 0) + 1 if head else 0,
                    }
                )
            return rows
        finally:
            await store.aclose()

    rows = anyio.run(main)
    if args.json:
        emit_json(rows)
        return 0
    if args.workers:
        print(f"{'worker':<44} {'host':<20} {'live leases':>11}")
        for r in rows:
            print(f"{r['worker']:<44} {r['host']:<20} {len(r['live_leases']):>11}")
            for lease in r["live_leases"]:
                print(f"    {lease['work_id']} attempt {lease['attempt']} expires in {lease['expires_in_s']} s")
        return 0
    print(f"{'run':<36} {'command':<13} {'seed':>5} {'status':<11}")
    for r in rows:
        print(f"{r['run_id']:<36} {r['command']:<13} {r['seed']:>5} {r['status']:<11}")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    """One agent alone on a store (all runs, or --run): several processes can share the store."""
    config = load_config(args.config).with_overrides(unsafe_no_sandbox=True if args.unsafe_no_sandbox else None)

    async def main() -> None:
        store = await open_store_arg(args.store, create=True)
        cfg, backend = resolve_backend(config)
        try:
            async with anyio.create_task_group() as tg:
                if args.name == "sandbox-runner":
                    async with open_pool(cfg) as pool:
                        agents = Agents(store, pool=pool, backend=None, lease_s=cfg.lease_s)
                        await agents.start(tg, args.name, args.run)
                        print(f"stop: {args.name} serving {args.store}", file=sys.stderr, flush=True)
                        await anyio.sleep_forever()
                agents = Agents(store, pool=None, backend=backend, lease_s=cfg.lease_s)
                await agents.start(tg, args.name, args.run)
                print(f"stop: {args.name} serving {args.store}", file=sys.stderr, flush=True)
        finally:
            await store.aclose()

    anyio.run(main)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "improve",
        help="one improvement of a task's seed solution; utility before/after",
        description="Run an improver (the seed improver by default) once on a task's seed "
        "solution in the sandbox and print its utility before and after on val and test.",
    )
    p.add_argument("--task", required=True, choices=task_names(), help="downstream task")
    p.add_argument(
        "--improver", default="seed", help="'seed', a program hash (prefix) from stop lineage, or a .py file"
    )
    add_run_options(p)
    p.set_defaults(func=cmd_improve)

    p = sub.add_parser(
        "self-improve",
        help="the STOP loop: an improver improves itself over generations",
        description="Each generation runs the current improver on its own source with the "
        "meta-utility (mean held-out utility of its outputs on downstream tasks); the "
        "new improver is adopted unless it failed or scored 0. The paper's protocol (6 "
        "responses x 4 LM calls, utility budget 25, 5 meta-utility runs on parity_noise, 6 "
        "generations, max tokens 1024): --config configs/paper.toml.",
    )
    p.add_argument("--generations", type=int, help="number of generations (default from config: 3)")
    p.add_argument("--tasks", nargs="+", choices=task_names(), help="downstream tasks of the meta-utility")
    p.add_argument("--runs", type=int, help="meta-utility runs per task (default 5)")
    p.add_argument("--improver", default="seed", help="starting improver: 'seed' or a program hash")
    p.add_argument("--adopt-if-better", action="store_true", help="adopt only if the meta-utility improves")
    add_run_options(p)
    p.set_defaults(func=cmd_self_improve)

    p = sub.add_parser(
        "transfer",
        help="apply an improver to tasks it was never scored on (the paper's Table 1)",
        description="On each task: u(seed solution), the seed improver I0 and the given improver I_T, "
        "each run --runs times (distinct seeds derived from the log); the table shows the mean and "
        "sample standard deviation of the test utility beside the STOP paper's Table 1 figures "
        "(labelled as the paper's; one GPT-4 run each).",
    )
    p.add_argument("--improver", required=True, help="program hash (prefix) of the improved improver, or 'seed'")
    p.add_argument("--tasks", nargs="+", required=True, choices=task_names())
    p.add_argument("--runs", type=int, default=1, help="runs per task and improver (default 1)")
    add_run_options(p)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("runs", help="list the runs in a store")
    add_store(p)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--workers", action="store_true", help="workers seen on the store, their hosts and live leases (not runs)"
    )
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("agent", help="run one agent alone against a store (multi-process set-ups)")
    p.add_argument("name", choices=AGENTS)
    add_store(p)
    p.add_argument("--run", help="only this run (default: every run in the store)")
    p.add_argument("--config", metavar="FILE", help="config for the LM backend and sandbox")
    p.add_argument("--unsafe-no-sandbox", action="store_true", help="DEVELOPMENT ONLY")
    p.set_defaults(func=cmd_agent)
