"""``stop audit``, ``stop lineage``, ``stop report`` and ``stop diff``: inspect a recorded run
(and ``stop keygen``: the key that signs runs' checkpoints, which audit verifies).

Nothing here runs generated code or writes to the store. Results go to stdout (``--json`` for
machine-readable output), logs to stderr. Exit codes: 0 fine, 1 audit failed (broken chain,
unreadable event, corrupt or missing blob) or runs differ (``stop diff``), 2 usage errors
(no such store, run or node).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import structlog

from events.signing import KEY_ENV, generate_key_file, load_public_key, public_key_text, signer_from_env
from outcome import UsageError
from replay.audit import audit_run
from replay.diff import diff_runs
from replay.lineage import build_lineage, render_tree, show_node
from replay.report import write_report
from replay.runs import resolve_run
from store.factory import DurableStore, open_store

__all__ = ("register",)

log = structlog.get_logger("cli.inspect")

DEFAULT_STORE = "runs/stop.db"


def register(subparsers: Any) -> None:
    """Add ``audit``, ``lineage``, ``report`` and ``diff`` to an argparse subparsers action."""
    p = subparsers.add_parser(
        "audit",
        help="verify a run's hash chain and blobs; count LM use, cost, violations",
        description="Checks a recorded run without running anything: the hash chain (the first "
        "broken link is named), every blob it refers to, LM calls (live/cache/offline), tokens and "
        "cost per lineage node and generation, sandbox violations by category, the unsandboxing "
        "rate per 1,000 proposals, reward-hacking flags and budget overruns; signed checkpoints "
        f"(recorded when {KEY_ENV} names a key from `stop keygen`) are verified. Exit 1 if the log "
        "was tampered with.",
    )
    _common(p)
    p.add_argument(
        "--head",
        metavar="HASH",
        help="fail (exit 1) unless the run's chain ends at this hash (the head a previous audit printed)",
    )
    p.add_argument(
        "--public-key",
        metavar="FILE",
        help="require the run's checkpoints to be signed by this key: the PATH.pub `stop keygen` wrote, a PEM "
        f"public key, or ed25519:BASE64 (default: the public part of {KEY_ENV}, if set); a run with no "
        "checkpoint, or one signed by another key, fails",
    )
    p.set_defaults(func=_cmd_audit)

    p = subparsers.add_parser(
        "keygen",
        help="make an Ed25519 key that signs runs' checkpoints (for STOP_SIGNING_KEY)",
        description="Writes a new Ed25519 private key to PATH (mode 0600; never overwrites) and its public "
        f"key to PATH.pub, and prints the public key. With {KEY_ENV}=PATH set, runs record signed "
        "checkpoints (every checkpoint_every events and at the run's end) that `stop audit` verifies. Keep "
        "PATH outside the store (whoever can edit the store must not be able to sign) and PATH.pub "
        "anywhere: `stop audit RUN --public-key PATH.pub` requires that key.",
    )
    p.add_argument("path", metavar="PATH", type=Path, help="where to write the private key")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.set_defaults(func=_cmd_keygen)

    p = subparsers.add_parser("lineage", help="the improver/solution tree of a run")
    _common(p)
    p.add_argument(
        "--show",
        metavar="ID",
        help="print a node's program and its diff against its parent (ID: node id or program hash prefix)",
    )
    p.set_defaults(func=_cmd_lineage)

    p = subparsers.add_parser("report", help="write a self-contained HTML report of a run")
    _common(p, json_flag=False)
    p.add_argument("-o", "--output", type=Path, default=None, help="output file (default report-<run>.html)")
    p.set_defaults(func=_cmd_report)

    p = subparsers.add_parser("diff", help="where two runs' lineages part (first differing event)")
    p.add_argument("run_a", metavar="RUN_A", help="run id, unique prefix or 'latest'")
    p.add_argument("run_b", metavar="RUN_B", help="run id, unique prefix or 'latest'")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"event store (default {DEFAULT_STORE})")
    p.add_argument("--store-b", default=None, help="store of RUN_B, if not the same")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.set_defaults(func=_cmd_diff)


def _common(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    p.add_argument("run", metavar="RUN", help="run id, unique prefix of one, or 'latest'")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"event store (default {DEFAULT_STORE})")
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output on stdout")


async def _open(path: str) -> DurableStore:
    return await open_store(path, create=False, readonly=True)


def _pinned_key(spec: str | None) -> str | None:
    """The public key audit requires: ``--public-key``, else that of ``STOP_SIGNING_KEY``."""
    if spec:
        return public_key_text(load_public_key(spec))
    signer = signer_from_env()
    return signer.public_key if signer is not None else None


def _cmd_keygen(args: argparse.Namespace) -> int:
    signer = generate_key_file(args.path)
    pub = f"{args.path}.pub"
    if args.json:
        print(
            json.dumps(
                {
                    "private_key": str(args.path),
                    "public_key_file": pub,
                    "public_key": signer.public_key,
                    "fingerprint": signer.fingerprint,
                },
                indent=2,
            )
        )
    else:
        print(signer.public_key)
        print(
            f"stop: wrote the private key {args.path} (mode 0600) and the public key {pub} (fingerprint "
            f"{signer.fingerprint}); sign runs with: export {KEY_ENV}={os.path.abspath(args.path)}",
            file=sys.stderr,
        )
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    pinned = _pinned_key(args.public_key)

    async def body() -> int:
        async with await _open(args.store) as store:
            run_id = await resolve_run(store, args.run)
            report = await audit_run(store, run_id, expected_head=args.head, public_key=pinned)
        if args.json:
            print(json.dumps(report.to_json(), indent=2, sort_keys=True))
        else:
            print(report.render())
        if not report.ok:
            log.error(
                "audit.failed",
                run_id=run_id,
                chain=str(report.chain),
                bad_blobs=[p.digest for p in report.blob_problems],
                checkpoints=report.checkpoints.status,
            )
        return 0 if report.ok else 1

    return anyio.run(body)


def _cmd_lineage(args: argparse.Namespace) -> int:
    async def body() -> int:
        async with await _open(args.store) as store:
            run_id = await resolve_run(store, args.run)
            lineage = await build_lineage(store, run_id)
            if args.show:
                node, text, diff = await show_node(store, lineage, args.show)
                trace = (await store.get_blob(node.traceback)).decode("utf-8", "replace") if node.traceback else None
                if args.json:
                    out = {"node": node.to_json(), "program": text, "diff": diff, "traceback": trace}
                    print(json.dumps(out, indent=2))
                else:
                    print(f"# node {node.id} ({node.kind}), program {node.program}, parent {node.parent}")
                    if node.error_kind:
                        print(f"# FAILED ({node.error_kind}): {node.error}")
                        for line in (trace or "").splitlines():
                            print(f"#   {line}")
                    print(text, end="" if text.endswith("\n") else "\n")
                    print(f"# diff against parent program {node.base}")
                    print(diff or "(no parent or no change)", end="" if diff.endswith("\n") else "\n")
                return 0
        if args.json:
            print(json.dumps(lineage.to_json(), indent=2))
        else:
            print(render_tree(lineage))
        return 0

    return anyio.run(body)


def _cmd_report(args: argparse.Namespace) -> int:
    async def body() -> int:
        async with await _open(args.store) as store:
            run_id = await resolve_run(store, args.run)
            out = args.output or Path(f"report-{run_id[:12]}.html")
            if await anyio.Path(out).is_dir():
                raise UsageError(f"-o {out} is a directory", hint=f"name a file, e.g. -o {out / 'report.html'}")
            if not await anyio.Path(out.parent).is_dir():
                raise UsageError(f"-o {out}: folder {out.parent} does not exist")
            try:
                path = await write_report(store, run_id, out)
            except OSError as exc:
                await anyio.Path(out.with_name(out.name + ".tmp")).unlink(missing_ok=True)
                raise UsageError(f"cannot write the report to {out}: {exc.strerror or exc}") from exc
        print(str(path))
        return 0

    return anyio.run(body)


def _cmd_diff(args: argparse.Namespace) -> int:
    async def body() -> int:
        async with await _open(args.store) as store_a:
            if args.store_b and await anyio.Path(args.store_b).resolve() != await anyio.Path(args.store).resolve():
                async with await _open(args.store_b) as store_b:
                    result = await _diff(store_a, store_b, args)
            else:
                result = await _diff(store_a, store_a, args)
        print(json.dumps(result.to_json(), indent=2) if args.json else result.render())
        return 0 if result.same else 1

    return anyio.run(body)


async def _diff(store_a: DurableStore, store_b: DurableStore, args: argparse.Namespace) -> Any:
    run_a = await resolve_run(store_a, args.run_a)
    run_b = await resolve_run(store_b, args.run_b)
    return await diff_runs(store_a, run_a, store_b, run_b)
