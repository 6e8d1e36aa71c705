"""Self-repair commands: ``stop repair`` (build the trees) and ``stop passat`` (estimate from them)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from agents.config import RunConfig, load_config
from agents.repair import resolve_problems
from cli.common import add_run_options, add_store, emit_json, execute_run, fmt, open_store_arg
from outcome import UsageError

__all__ = ("register",)


def _config(args: argparse.Namespace) -> RunConfig:
    return load_config(args.config).with_overrides(
        model=args.model, unsafe_no_sandbox=True if args.unsafe_no_sandbox else None
    )


def _render_repair(s: dict[str, Any]) -> None:
    print(
        f"self-repair on HumanEval: n_p={s['n_p']} n_fr={s['n_fr']} ({s['mode']} feedback; "
        f"model {s['model']}, feedback model {s['feedback_model']})"
    )
    print(f"{'problem':<16} {'solved':<8} {'by':<7} {'samples':>7} {'repairs':>7} {'tokens':>7}")
    for r in s["problems"]:
        print(
            f"{r['problem']:<16} {'yes' if r['solved'] else 'no':<8} {r['solved_by'] or '-':<7} "
            f"{r['samples']:>7} {r['repairs']:>7} {r['tokens']:>7}"
            + (f"  ({r['lm_failures']} LM failures)" if r["lm_failures"] else "")
        )
    print(
        f"solved {s['solved']}/{len(s['problems'])} (pass rate {s['pass_rate']:.3f}); "
        f"{s['programs']} programs, {s['tokens']} generated tokens"
    )


def cmd_repair(args: argparse.Namespace) -> int:
    if args.n_p < 1 or args.n_fr < 0:
        raise UsageError("--n-p must be >= 1 and --n-fr >= 0")
    config = _config(args)
    separate = bool(args.separate_feedback or args.feedback_model)
    if args.feedback_model and not args.separate_feedback:
        print(
            "stop: --feedback-model implies --separate-feedback (explanations come from the feedback "
            "model, repairs from the main model)",
            file=sys.stderr,
        )
    options = {
        "dataset": args.dataset,
        "problems": resolve_problems(args.problems),
        "n_p": args.n_p,
        "n_fr": args.n_fr,
        "feedback_model": args.feedback_model,
        "separate_feedback": separate,
        "full_tree": bool(args.full_tree),
    }

    return execute_run(args, "repair", config, options, _render_repair)


def _render_passat(run_id: str, t: dict[str, Any]) -> None:
    print(f"run {run_id}: {t['problems']} problems, bootstrap {t['resamples']} resamples (seed {t['seed']})")
    if t["incomplete"]:
        print(
            f"note: {t['incomplete']} problem(s) stopped at their first pass, so some failing samples have no "
            "recorded repairs (run with --full-tree for an unbiased estimate)"
        )
    if t["unchecked"]:
        print(f"note: {t['unchecked']} program(s) have no check result (counted as failing)")
    print(
        f"{'n_p':>4} {'n_fr':>4} {'k':>4} {'programs':>8} {'tokens':>9} {'pass':>6} {'±std':>6} "
        f"{'iid@k':>6} {'ratio':>6}"
    )
    for r in t["rows"]:
        print(
            f"{r['n_p']:>4} {r['n_fr']:>4} {r['k']:>4} {r['programs']:>8.2f} {r['tokens']:>9.1f} "
            f"{r['pass_rate']:>6.3f} {r['pass_std']:>6.3f} {r['iid_pass_rate']:>6.3f} {fmt(r['ratio']):>6}"
        )


def cmd_passat(args: argparse.Namespace) -> int:
    from replay.passat import load_trees, passat_table, plot_passat
    from replay.runs import resolve_run

    async def main() -> tuple[str, dict[str, Any]]:
        store = await open_store_arg(args.store, create=False, readonly=True)
        try:
            run_id = await resolve_run(store, args.run)
            return run_id, passat_table(await load_trees(store, run_id), resamples=args.resamples, seed=args.seed)
        finally:
            await store.aclose()

    run_id, table = anyio.run(main)
    if args.plot:
        plot_passat(table, args.plot, title=f"self-repair pass rate, run {run_id[:24]}")
    if args.json:
        emit_json({"run_id": run_id, **table, "plot": args.plot})
    else:
        _render_passat(run_id, table)
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "repair",
        help="self-repair on HumanEval: sample, check, explain and repair failures",
        description="For each problem: sample n_p programs; check them in the sandbox; if none "
        "passes, ask for n_fr explanation+repair completions per failing program and "
        "check those. The whole tree is recorded (see stop passat).",
    )
    p.add_argument("--dataset", choices=("humaneval",), default="humaneval")
    p.add_argument(
        "--problems",
        nargs="+",
        metavar="ID",
        help="HumanEval/3, 3, comma lists, or 'all' (default: the first 5 problems)",
    )
    p.add_argument("--n-p", type=int, default=5, help="initial programs per problem (default 5)")
    p.add_argument("--n-fr", type=int, default=3, help="feedback+repair completions per failing program (default 3)")
    p.add_argument("--feedback-model", help="model for the explanations (implies --separate-feedback)")
    p.add_argument(
        "--separate-feedback",
        action="store_true",
        help="explanations first (n_fr in one call), then one repair per explanation",
    )
    p.add_argument(
        "--full-tree",
        action="store_true",
        help="repair failing samples even when another sample passed (a complete tree for stop passat)",
    )
    add_run_options(p)
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser(
        "passat",
        help="pass rate vs programs and tokens (pass@t) of a repair run, by bootstrap",
        description="Bootstrap over the recorded repair trees: for each (n_p', n_fr') up to the "
        "run's, draw programs with replacement; compare with i.i.d. sampling at the "
        "same number of programs.",
    )
    p.add_argument("run", metavar="RUN", help="run id, unique prefix, or 'latest'")
    add_store(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="PNG", help="write a plot (needs matplotlib)")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=2023)
    p.set_defaults(func=cmd_passat)
