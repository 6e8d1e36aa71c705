"""``stop estimate [--config F] COMMAND-ARGS``: the most LM use a run's budgets allow, before it runs.

Upper bounds, from the config's improver budgets (``lm_calls`` per session, ``responses_per_call``
completions per call), the meta-utility's shape (tasks x runs sessions per meta-utility call,
``meta_utility_budget`` calls per generation), ``max_tokens`` per completion and the price table
(``lm.prices`` over the built-in one). Per generation and in total, for self-improve, improve and
transfer. The run-level caps (``max_cost_usd`` ...) are shown beside them: a run stops at them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from agents.config import load_config
from lm import price_for
from outcome import UsageError

__all__ = ("estimate", "register")

_COMMANDS = ("self-improve", "improve", "transfer")


def _sessions(command: str, cfg: Any, generations: int, n_tasks: int, runs: int = 1) -> tuple[int, int]:
    """(improver sessions per generation, generations) at most."""
    mc = cfg.meta_utility
    meta = len(mc.tasks) * mc.runs  # sessions per meta-utility call
    if command == "self-improve":
        # the current improver scored once, the generation session, up to meta_utility_budget
        # meta-utility calls inside it, and the candidate scored once
        return 1 + (mc.meta_utility_budget + 2) * meta, generations
    if command == "improve":
        return 1, 1
    return 2 * n_tasks * runs, 1  # transfer: the seed and the given improver on every task, `runs` times


def estimate(
    command: str, cfg: Any, *, generations: int, n_tasks: int, prompt_tokens: int, runs: int = 1
) -> dict[str, Any]:
    """``runs``: transfer's runs per task and improver (other commands take runs from ``cfg``)."""
    b = cfg.improver
    sessions, gens = _sessions(command, cfg, generations, n_tasks, runs)
    calls = sessions * b.lm_calls
    completions = calls * b.responses_per_call
    requests = completions  # a call asks at most responses_per_call distinct messages
    completion_tokens = completions * cfg.max_tokens
    prompt = requests * prompt_tokens
    model = str(cfg.lm.get("model") or "offline-mutation")
    price = price_for(model, cfg.lm.get("prices"))
    cost = None if price is None else prompt * price[0] / 1000 + completion_tokens * price[1] / 1000
    per_gen = {
        "improver_sessions": sessions,
        "lm_calls": calls,
        "lm_requests": requests,
        "completions": completions,
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "tokens": prompt + completion_tokens,
        "cost_usd": cost,
    }
    total = {k: (v * gens if v is not None else None) for k, v in per_gen.items()}
    return {
        "command": command,
        "model": model,
        "price_per_1k": list(price) if price is not None else None,
        "generations": gens,
        **({"runs": runs} if command == "transfer" else {}),
        "assumed_prompt_tokens_per_request": prompt_tokens,
        "per_generation": per_gen,
        "total": total,
        "caps": {
            "max_cost_usd": cfg.max_cost_usd,
            "max_tokens_total": cfg.max_tokens_total,
            "max_lm_calls": cfg.max_lm_calls,
        },
    }


def _cmd(args: argparse.Namespace) -> int:
    if args.run_command not in _COMMANDS:
        raise UsageError(f"stop estimate knows {', '.join(_COMMANDS)}; got {args.run_command!r}")
    rest = argparse.ArgumentParser(add_help=False)
    rest.add_argument("--config")
    rest.add_argument("--model")
    rest.add_argument("--generations", type=int)
    rest.add_argument("--tasks", nargs="+")
    rest.add_argument("--runs", type=int)
    rest.add_argument("--max-cost-usd", type=float)
    rest.add_argument("--max-tokens-total", type=int)
    rest.add_argument("--max-lm-calls", type=int)
    rest.add_argument("--json", action="store_true")
    known, _ = rest.parse_known_args(args.rest)
    args.json = args.json or known.json
    cfg = load_config(known.config or args.config)
    transfer = args.run_command == "transfer"
    transfer_tasks = known.tasks if transfer else None
    if transfer and known.runs is not None and known.runs < 1:
        raise UsageError(f"--runs must be >= 1, got {known.runs}")
    cfg = cfg.with_overrides(
        model=known.model,
        generations=known.generations,
        tasks=None if transfer else known.tasks,
        runs=None if transfer else known.runs,  # transfer's --runs is its own (below), not the meta-utility's
        max_cost_usd=known.max_cost_usd,
        max_tokens_total=known.max_tokens_total,
        max_lm_calls=known.max_lm_calls,
    )
    out = estimate(
        args.run_command,
        cfg,
        generations=cfg.generations,
        n_tasks=len(transfer_tasks or ()),
        prompt_tokens=args.prompt_tokens,
        runs=(known.runs or 1) if transfer else 1,
    )
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    print(f"stop {args.run_command} with model {out['model']}: at most (upper bounds from the budgets)")
    if "runs" in out:
        print(f"({out['runs']} run(s) per task and improver)")
    print(f"{'':<20} {'per generation':>16} {'total':>16}")
    for key in ("improver_sessions", "lm_calls", "lm_requests", "completions", "tokens", "cost_usd"):
        g, t = out["per_generation"][key], out["total"][key]
        if key == "cost_usd":
            g, t = (f"${g:.2f}" if g is not None else "unpriced"), (f"${t:.2f}" if t is not None else "unpriced")
        print(f"{key:<20} {g!s:>16} {t!s:>16}")
    caps = {k: v for k, v in out["caps"].items() if v is not None}
    print(f"run caps: {caps or 'none (set max_cost_usd / --max-cost-usd to bound spend)'}")
    print(f"(prompt tokens assumed {args.prompt_tokens} per request; --prompt-tokens to change)")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "estimate",
        help="the most LM calls, tokens and cost a run's budgets allow (before running it)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="run config (as the run command takes it)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--prompt-tokens", type=int, default=2000, help="assumed prompt tokens per request (default 2000)")
    p.add_argument("run_command", metavar="COMMAND", help=f"one of {', '.join(_COMMANDS)}")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the command's arguments (--generations, --tasks, ...)")
    p.set_defaults(func=_cmd)
