"""``stop sandbox run FILE`` and ``stop doctor``.

``register(subparsers)`` adds both commands; each handler takes the parsed namespace and
returns an exit code (0: the job ran and succeeded / all is well, 1: the job failed, 2: bad input,
3: the sandbox cannot run here).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from cli.common import read_program
from outcome import ExitCode, UsageError
from sandbox import Finding, Job, JobResult, SandboxConfig, SandboxPool, SandboxUnavailable, detect_layers, scan_program
from sandbox._pool import effective_layers

__all__ = ("register",)


def register(subparsers: Any) -> None:
    """Add ``sandbox`` (with ``run``) and ``doctor`` to an argparse subparsers action."""
    sandbox_p = subparsers.add_parser("sandbox", help="run a program in the sandbox")
    sandbox_p.set_defaults(func=lambda args: (sandbox_p.print_help(), 2)[1])
    sandbox_sub = sandbox_p.add_subparsers(dest="sandbox_command", metavar="{run}")
    run_p = sandbox_sub.add_parser("run", help="run a program file exactly as the evaluator would and show the outcome")
    run_p.add_argument("file", type=Path, help="program file")
    run_p.add_argument("--function", default=None, help="function to call (default: just run the module)")
    run_p.add_argument(
        "--args-json", default="[]", help="JSON list of positional arguments (or an object: keyword arguments)"
    )
    run_p.add_argument("--timeout", type=float, default=10.0, help="wall-clock limit, seconds")
    run_p.add_argument(
        "--call-timeout", type=float, default=None, help="per-call limit measured around the function call, seconds"
    )
    run_p.add_argument("--memory-mb", type=int, default=1024, help="address-space limit")
    run_p.add_argument("--seed", type=int, default=0, help="seed for random and numpy.random")
    run_p.add_argument("--json", action="store_true", help='print the JobResult JSON (plus "findings" and "layers")')
    run_p.add_argument(
        "--unsafe-no-sandbox", action="store_true", help="development only: no namespaces, Landlock or seccomp (logged)"
    )
    run_p.set_defaults(func=_cmd_run)

    doctor_p = subparsers.add_parser(
        "doctor", help="which isolation layers work on this machine, and why any is missing"
    )
    doctor_p.add_argument("--json", action="store_true", help="print JSON")
    doctor_p.add_argument(
        "--python", default=None, help="check workers started with this interpreter (default: this one)"
    )
    doctor_p.set_defaults(func=_cmd_doctor)


def _parse_args(text: str) -> tuple[list[Any], dict[str, Any]]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--args-json is not JSON: {exc}") from exc
    if isinstance(data, list):
        return data, {}
    if isinstance(data, dict):
        return [], data
    raise UsageError("--args-json must be a JSON list or object")


def _cmd_run(args: argparse.Namespace) -> int:
    program = read_program(args.file, "program file")
    call_args, call_kwargs = _parse_args(args.args_json)
    for flag, value in (
        ("--timeout", args.timeout),
        ("--call-timeout", args.call_timeout),
        ("--memory-mb", args.memory_mb),
    ):
        if value is not None and not value > 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    findings = scan_program(program)
    job = Job(
        program=program,
        function=args.function,
        args=call_args,
        kwargs=call_kwargs,
        wall_timeout_s=args.timeout,
        call_timeout_s=args.call_timeout,
        memory_mb=args.memory_mb,
        seed=args.seed,
    )
    config = SandboxConfig(workers=1, unsafe_no_sandbox=args.unsafe_no_sandbox)

    async def go() -> tuple[JobResult, dict[str, Any]]:
        async with SandboxPool(config) as pool:
            return await pool.run(job), pool.layers.to_json()

    result, layers = anyio.run(go)
    if args.json:
        out = result.to_json()
        out["findings"] = [f.to_json() for f in findings]
        out["layers"] = layers
        print(json.dumps(out, indent=2))
    else:
        _print_result(result, findings, layers)
    return 0 if result.ok else 1


def _print_result(result: JobResult, findings: list[Finding], layers: dict[str, Any]) -> None:
    active = [name for name, layer in layers["layers"].items() if layer["active"]]
    print(f"status      {result.status}")
    if result.ok:
        print(f"value       {json.dumps(result.encoded_value)[:2000]}")
    if result.error:
        print(f"error       {result.error}")
    exit_kind = f"signal {result.signal}" if result.signal else f"exit code {result.exit_code}"
    print(f"exit        {exit_kind}")
    call = f"{result.call_time_s:.4f} s" if result.call_time_s is not None else "-"
    print(f"time        wall {result.wall_time_s:.4f} s, call {call}, CPU {result.cpu_time_s:.4f} s")
    print(f"memory      max RSS {result.max_rss_kb} KiB")
    print(f"violations  {', '.join(result.violations) or 'none observed'}")
    print(f"layers      {'UNSAFE, ' if layers['unsafe_no_sandbox'] else ''}{', '.join(active)}")
    print(f"findings    {len(findings)}")
    for f in findings:
        print(f"  line {f.line:>4}  {f.category:<18} {f.detail}")
    for name, text, cut in (
        ("stdout", result.stdout, result.stdout_truncated),
        ("stderr", result.stderr, result.stderr_truncated),
    ):
        if text:
            print(f"--- {name}{' (truncated)' if cut else ''} ---")
            print(text.rstrip("\n"))
    if result.traceback:
        print("--- traceback ---")
        print(result.traceback.rstrip("\n"))


async def _start_check(python: str | None) -> tuple[bool, str]:
    """Start one real worker and run one tiny job in it: what every command will do first."""
    try:
        async with SandboxPool(SandboxConfig(workers=1, python=python)) as pool:
            result = await pool.run(Job(program="def f():\n    return 1\n", function="f", wall_timeout_s=30.0))
    except SandboxUnavailable as exc:
        return False, exc.message
    if not result.ok:
        return False, f"a worker started but a trivial job failed: {result.status} {result.error or ''}".strip()
    return True, f"a worker started and ran a job ({pool.layers.summary()})"


def _cmd_doctor(args: argparse.Namespace) -> int:
    """Each layer, then a real worker start; exit 3 when the sandbox cannot run here."""
    report = detect_layers()
    try:
        effective_layers(SandboxConfig(), report)
        usable, reason = True, ""
    except SandboxUnavailable as exc:
        usable, reason = False, exc.message
    started, start_detail = anyio.run(_start_check, args.python) if usable else (False, "not tried")
    if usable and not started:
        usable, reason = False, start_detail
    code = int(ExitCode.OK if usable else ExitCode.ENVIRONMENT)
    if args.json:
        print(
            json.dumps(
                {
                    **report.to_json(),
                    "start": {"ok": started, "detail": start_detail},
                    "usable": usable,
                    "reason": reason,
                },
                indent=2,
            )
        )
        return code
    print(f"python      {args.python or sys.executable}")
    for layer in report.layers:
        mark = "ok " if layer.active else "-- "
        print(f"{mark} {layer.name:<11} {layer.detail}")
    print(f"{'ok ' if started else '-- '} {'start':<11} {start_detail}")
    for note in report.notes:
        print(f"note: {note}")
    print("sandbox: usable" if usable else f"sandbox: NOT usable: {reason}")
    return code
