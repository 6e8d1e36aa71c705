"""``stop lm``: which language model a run would use; ``stop lm check``; ``stop lm propose FILE``.

``register(subparsers)`` adds the commands; handlers take the parsed namespace and return an
exit code. Keys are read from the environment only and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from cli.common import read_program
from lm import LMError, LMRequest, LMService, OpenAICompatibleBackend, backend_from_config
from outcome import RunFailed
from store import MemoryStore

__all__ = ("register",)


def register(subparsers: Any) -> None:
    lm_p = subparsers.add_parser("lm", help="show the language model backend a run would use")
    _common(lm_p)
    lm_p.set_defaults(func=_cmd_show)
    sub = lm_p.add_subparsers(dest="lm_command", metavar="{check,propose}")
    check_p = sub.add_parser("check", help="ask the configured endpoint for its model list (one request)")
    _common(check_p)
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
    backend = _backend(args)
    if not isinstance(backend, OpenAICompatibleBackend):
        print("offline, no language model: nothing to check")
        return 0

    async def check() -> list[str]:
        async with backend:
            models = await backend._get_client().models.list()
            return [m.id for m in models.data]

    try:
        names = anyio.run(check)
    except Exception as e:
        raise RunFailed(f"{backend.describe()['label']}: {type(e).__name__}: {e}") from e
    print(f"ok: {backend.describe()['label']}; {len(names)} models")
    for n in names[:50]:
        print(f"  {n}")
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
