"""``stop lm``: which language model a run would use; ``stop lm check``; ``stop lm propose FILE``.

``register(subparsers)`` adds the commands; handlers take the parsed namespace and return an
exit code. Keys are read from the environment only and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from cli.common import read_program
from lm import LMError, LMRequest, LMService, OpenAICompatibleBackend, RetryPolicy, backend_from_config
from outcome import RunFailed
from store import MemoryStore

__all__ = ("register",)


def register(subparsers: Any) -> None:
    lm_p = subparsers.add_parser("lm", help="show the language model backend a run would use")
    _common(lm_p)
    lm_p.set_defaults(func=_cmd_show)
    sub = lm_p.add_subparsers(dest="lm_command", metavar="{check,propose}")
    check_p = sub.add_parser(
        "check",
        help="one tiny chat completion to the model: latency, n honoured, usage, seed (exit 1 on failure)",
    )
    _common(check_p)
    check_p.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    check_p.set_defaults(func=_cmd_check)
    prop_p = sub.add_parser("propose", help="ask the backend for improved versions of a program file")
    _common(prop_p)
    prop_p.add_argument("file", type=Path, help="a Python program")
    prop_p.add_argument("-n", type=int, default=3, help="number of proposals")
    prop_p.add_argument("--temperature", type=float, default=0.7)
    prop_p.set_defaults(func=_cmd_propose)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model name (else OPENAI_MODEL)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (else OPENAI_BASE_URL)")
    p.add_argument("--offline", action="store_true", help="use the offline mutation model")


def _backend(args: argparse.Namespace) -> Any:
    cfg: dict[str, Any] = {}
    if getattr(args, "offline", False):
        cfg["backend"] = "offline"
    if getattr(args, "model", None):
        cfg["model"] = args.model
    if getattr(args, "base_url", None):
        cfg["base_url"] = args.base_url
    return backend_from_config({"lm": cfg}, os.environ)


def _cmd_show(args: argparse.Namespace) -> int:
    backend = _backend(args)
    print(json.dumps(backend.describe(), indent=2))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """One tiny chat completion (n=2, a seed, 16 tokens) to the named model: what works."""
    backend = _backend(args)
    if not isinstance(backend, OpenAICompatibleBackend):
        print("offline, no language model: nothing to check")
        return 0
    model = backend.default_model or ""
    backend.retry = RetryPolicy(max_attempts=2, initial_backoff=0.2, max_backoff=1.0)

    async def check() -> dict[str, Any]:
        req = LMRequest(
            model=model,
            messages=[{"role": "user", "content": "Reply with the single word: ok"}],
            temperature=0.0,
            max_tokens=16,
            n=2,
            seed=1,
        )
        async with backend:
            start = time.perf_counter()
            out = await backend.complete(req)
            latency = time.perf_counter() - start
        params = backend.params(model)
        return {
            "ok": True,
            "endpoint": backend.describe()["base_url"],
            "model": model,
            "latency_s": round(latency, 3),
            "http_calls": backend.http_calls,
            "n_honoured": params.n_honoured,
            "usage_reported": all(c.usage_note is None for c in out),
            "seed_accepted": params.seed,
            "temperature_accepted": params.temperature,
            "token_param": params.token_param,
            "reply": out[0].text[:80],
            "finish_reason": out[0].finish_reason,
        }

    try:
        report = anyio.run(check)
    except LMError as e:
        if args.json:
            print(json.dumps({"ok": False, "model": model, "error": str(e)}, indent=2))
        raise RunFailed(f"{backend.describe()['label']}: {e}") from e
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"ok: {backend.describe()['label']}")
    for key in ("latency_s", "n_honoured", "usage_reported", "seed_accepted", "temperature_accepted", "token_param"):
        print(f"  {key:<21} {report[key]}")
    print(f"  {'reply':<21} {report['reply']!r} ({report['finish_reason']})")
    return 0


def _cmd_propose(args: argparse.Namespace) -> int:
    backend = _backend(args)
    code = read_program(args.file, "program file")
    message = f"Improve the following solution:\n```python\n{code}\n```\nFirst propose an idea, then implement it."
    print(f"# backend: {backend.describe()['label']}", file=sys.stderr)

    async def propose() -> list[str]:
        model = getattr(args, "model", None) or backend.default_model or "offline-mutation"
        req = LMRequest(
            model=model,
            messages=[
                {"role": "system", "content": "You are an expert programmer."},
                {"role": "user", "content": message},
            ],
            temperature=args.temperature,
            n=args.n,
        )
        async with LMService(backend, MemoryStore()) as svc:
            return (await svc.answer(req, 0)).texts

    try:
        replies = anyio.run(propose)
    except LMError as e:
        raise RunFailed(str(e)) from e
    for i, r in enumerate(replies):
        print(f"--- proposal {i} ---\n{r}")
    return 0
