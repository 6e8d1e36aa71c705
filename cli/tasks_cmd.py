"""``stop tasks``, ``stop tasks show NAME`` and ``stop score``.

``register(subparsers)`` adds the commands to the main parser; each sets ``func`` to a handler
taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from cli.common import read_program
from outcome import UsageError
from tasks import Evaluation, MetaTask, Task, all_tasks, evaluate, get_task

__all__ = ("register",)


def register(subparsers: Any) -> None:
    """Add ``tasks`` (list / show) and ``score`` to an argparse subparsers action."""
    tasks_p = subparsers.add_parser("tasks", help="list the downstream tasks, or show one")
    tasks_p.set_defaults(func=_cmd_list)
    tasks_sub = tasks_p.add_subparsers(dest="tasks_command", metavar="{show}")
    show_p = tasks_sub.add_parser(
        "show",
        help="what an improver is shown (utility.str, utility.description), the splits, the limits",
        description="Print exactly what an improver's `utility` shows for this task: `utility.str` (the "
        "visible utility program) and `utility.description` (the prose), plus the splits and limits. "
        "The budgets (and, for meta_improver, the texts) are those of --config (default: the reference's).",
    )
    show_p.add_argument("name", help="task name (see `stop tasks`), or meta_improver")
    show_p.add_argument("--json", action="store_true", help="print JSON (utility_str and description verbatim)")
    show_p.add_argument("--str", action="store_true", dest="only_str", help="print only utility.str, verbatim")
    show_p.add_argument("--config", metavar="FILE", help="run config whose budgets to show")
    show_p.set_defaults(func=_cmd_show)

    score_p = subparsers.add_parser("score", help="score a solution file in the sandbox")
    score_p.add_argument("--task", required=True, help="task name (see `stop tasks`)")
    score_p.add_argument("--split", choices=("val", "test"), default="val")
    score_p.add_argument("file", type=Path, help="solution program (defines `algorithm`)")
    score_p.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    score_p.add_argument("--seed", type=int, default=0, help="evaluation seed (guest RNG)")
    score_p.add_argument("--workers", type=int, default=2, help="sandbox workers")
    score_p.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="drop the isolation layers (still a separate, limited process); trusted code only",
    )
    score_p.set_defaults(func=_cmd_score)


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [(t.name, t.split_sizes, t.time_limit_s) for t in all_tasks()]
    width = max(len(r[0]) for r in [*rows, (MetaTask.name, {}, 0.0)])
    print(f"{'task':<{width}}  {'val':>4} {'test':>4}  limit")
    for name, sizes, limit in rows:
        print(f"{name:<{width}}  {sizes['val']:>4} {sizes['test']:>4}  {limit:g} s")
    print(f"{MetaTask.name:<{width}}  (improvers; see `stop tasks show {MetaTask.name}`)")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from agents.config import load_config

    mc = load_config(args.config).meta_utility
    task: Task | MetaTask = MetaTask(mc) if args.name == MetaTask.name else get_task(args.name)
    info = task.info()
    # The numbers the guest's objects carry in a session of this task (improve, transfer and the
    # meta-utility's runs use the improver budget; an improver of improvers the meta-utility's).
    info["utility_budget"] = mc.meta_utility_budget if isinstance(task, MetaTask) else mc.improver.utility_calls
    info["language_model_budget"] = mc.improver.lm_calls
    info["max_responses_per_call"] = mc.improver.responses_per_call
    if args.only_str:
        sys.stdout.write(info["utility_str"])
        return 0
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"task: {info['name']}")
    print(f"function: {info['function']}")
    if "splits" in info:
        print("splits: " + ", ".join(f"{k} {v} instances" for k, v in info["splits"].items()))
        print(f"time limit per instance: {info['time_limit_s']:g} s (wall, around the call)")
        print(f"job wall timeout: {info['wall_timeout_s']:g} s")
    if "config" in info:
        print("config: " + json.dumps(info["config"]))
    print(
        f"utility.budget {info['utility_budget']}, language_model.budget {info['language_model_budget']}, "
        f"language_model.max_responses_per_call {info['max_responses_per_call']}"
        + ("" if args.config else " (the reference's; --config for a run's)")
    )
    for title, key in (("utility.str", "utility_str"), ("utility.description", "description")):
        print()
        print(f"---- {title} " + "-" * (70 - len(title)))
        sys.stdout.write(info[key] if info[key].endswith("\n") else info[key] + "\n")
    return 0


def _format(evaluation: Evaluation) -> str:
    lines = [f"task {evaluation.task}  split {evaluation.split}  utility {evaluation.utility:.4f}"]
    counts = evaluation.error_counts()
    if counts:
        lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append(f"{'#':>4}  {'score':>6}  {'time_s':>8}  {'kind':<14} reason")
    for o in evaluation.instances:
        t = "-" if o.time_s is None else f"{o.time_s:.4f}"
        lines.append(f"{o.index:>4}  {o.score:>6.3f}  {t:>8}  {o.error_kind or 'ok':<14} {o.reason}")
    return "\n".join(lines)


async def _score(task: Task, program: str, split: str, seed: int, workers: int, unsafe: bool) -> Evaluation:
    from sandbox import SandboxConfig, SandboxPool

    config = SandboxConfig(workers=workers)
    if unsafe:
        config = _unsafe_config(config)
    async with SandboxPool(config) as pool:
        return await evaluate(task, program, split, pool, seed=seed)


def _unsafe_config(config: Any) -> Any:
    """The sandbox config without isolation layers, if the sandbox offers that switch."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config)}
    for field_name, value in (("unsafe_no_sandbox", True),):
        if field_name in names:
            return dataclasses.replace(config, **{field_name: value})
    raise UsageError("this sandbox build has no unsafe mode; run without --unsafe-no-sandbox")


def _cmd_score(args: argparse.Namespace) -> int:
    task = get_task(args.task)
    program = read_program(args.file, "solution file")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.unsafe_no_sandbox:
        print("warning: --unsafe-no-sandbox: isolation layers are off; trusted code only", file=sys.stderr)
    evaluation = anyio.run(_score, task, program, args.split, args.seed, args.workers, args.unsafe_no_sandbox)
    if args.json:
        print(json.dumps(evaluation.to_dict(), indent=2))
    else:
        print(_format(evaluation))
    return 0
