"""Starting a run: its identity, its first event, and the agents working on it until it ends."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from agents.config import RunConfig
from agents.launch import AGENTS, Agents, run_agents
from agents.progress import report_progress
from events import Event, canonical_json, make_event, sha256_hex
from events.types import RunStarted
from lm import LMBackend, backend_from_config
from outcome import ConfigError
from sandbox import SandboxConfig, SandboxPool
from store.base import EventStore

__all__ = ("RunRequest", "new_run_id", "open_pool", "resolve_backend", "resume_run", "start_and_run")

log = structlog.get_logger("run")


@dataclass(frozen=True)
class RunRequest:
    command: str
    seed: int
    config: RunConfig
    options: dict[str, Any]


async def new_run_id(store: EventStore, req: RunRequest, make_root: Callable[[str], Event]) -> str:
    """Record a new run's first event, ``make_root(run_id)``, and return its id.

    Deterministic: the command, seed and config digest, plus how many such runs exist. The store
    chooses the number and appends the root in one transaction (``EventStore.start_run``), so two
    processes starting the same run at once get different ids.
    """
    digest = sha256_hex(canonical_json([req.command, req.seed, req.config.to_dict(), req.options]))[:10]
    root = await store.start_run(f"{req.command}-{digest}", make_root)
    return root.run_id


def resolve_backend(config: RunConfig) -> tuple[RunConfig, LMBackend]:
    """The backend the config asks for, and the config with the model name made explicit."""
    backend = backend_from_config(config.lm, os.environ)
    model = config.lm.get("model") or backend.default_model
    if model and model != config.lm.get("model"):
        config = config.with_overrides(model=model)
    return config, backend


def open_pool(config: RunConfig) -> SandboxPool:
    if config.unsafe_no_sandbox:
        log.warning(
            "sandbox.UNSAFE",
            message="--unsafe-no-sandbox: untrusted code runs WITHOUT isolation "
            "(development only); this is recorded in the run's first event",
        )
    return SandboxPool(
        SandboxConfig(
            workers=config.sandbox_workers,
            unsafe_no_sandbox=config.unsafe_no_sandbox,
            max_sessions=config.max_sessions,
        )
    )


def _root(run_id: str, req: RunRequest, pool: SandboxPool, backend: LMBackend) -> Event:
    config = req.config.to_dict()
    config["options"] = req.options
    host = {
        "sandbox": pool.layers.to_json(),
        "lm": backend.describe(),
        "python": platform.python_version(),
        "platform": sys.platform,
    }
    return make_event(
        run_id, RunStarted(command=req.command, seed=req.seed, config=config, host=host), cause=None, key=0
    )


async def _drive(store: EventStore, agents: Agents, run_id: str, progress: bool) -> Event:
    async with anyio.create_task_group() as tg:
        if progress:
            tg.start_soon(report_progress, store, run_id)
        final = await run_agents(agents, run_id)
        tg.cancel_scope.cancel()
    return final


async def start_and_run(
    store: EventStore,
    req: RunRequest,
    *,
    progress: bool = True,
    on_started: Callable[[str], Awaitable[None]] | None = None,
) -> Event:
    """Record a new run and work on it until it ends; returns ``run.finished`` or ``run.failed``."""
    config, backend = resolve_backend(req.config)
    req = RunRequest(req.command, req.seed, config, req.options)
    if backend.offline:
        print("stop: LM backend: offline, no language model (seeded program mutation)", file=sys.stderr)
    try:
        async with open_pool(config) as pool:
            run_id = await new_run_id(store, req, lambda rid: _root(rid, req, pool, backend))
            if on_started is not None:
                await on_started(run_id)
            agents = Agents(store, pool=pool, backend=backend, lease_s=config.lease_s)
            return await _drive(store, agents, run_id, progress)
    finally:
        await _close(backend)


async def _close(backend: LMBackend) -> None:
    close = getattr(backend, "aclose", None)
    if close is not None:
        with anyio.CancelScope(shield=True):
            await close()


async def resume_run(
    store: EventStore, run_id: str, *, progress: bool = True, names: tuple[str, ...] = AGENTS
) -> Event:
    """Continue a run from its log: the agents redo whatever was asked and not answered."""
    from agents.runinfo import run_info

    info = await run_info(store, run_id)
    config, backend = resolve_backend(info.config)
    if config.lm.get("model") != info.config.lm.get("model"):
        raise ConfigError(
            f"run {run_id} used model {info.config.lm.get('model')!r}; this machine resolves {config.lm.get('model')!r}",
            hint="set OPENAI_MODEL (or the endpoint variables) as they were when the run started",
        )
    try:
        async with open_pool(info.config) as pool:
            agents = Agents(store, pool=pool, backend=backend, lease_s=info.config.lease_s)
            return await _drive(store, agents, run_id, progress)
    finally:
        await _close(backend)
