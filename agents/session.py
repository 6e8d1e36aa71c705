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
from agents.notify import Notify, run_notifier
from agents.progress import report_progress
from events import Event, canonical_json, make_event, sha256_hex
from events.lm_events import BudgetExhausted, BudgetRaised
from events.signing import signer_from_env
from events.types import RunStarted
from lm import LMBackend, backend_from_config, price_snapshot
from outcome import ConfigError, UsageError
from sandbox import SandboxConfig, SandboxPool
from store.base import EventStore

__all__ = (
    "Notify",
    "RunRequest",
    "new_run_id",
    "open_pool",
    "raise_caps",
    "resolve_backend",
    "resume_run",
    "snapshot_prices",
    "start_and_run",
)

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


def snapshot_prices(config: RunConfig) -> RunConfig:
    """The run's price table written into its config (so a resume bills the same); a cost cap
    on a model with no known price is refused before anything runs."""
    model = config.lm.get("model")
    if not model:
        return config
    prices = price_snapshot(str(model), config.lm.get("prices"))
    if config.max_cost_usd is not None and str(model) not in prices:
        raise ConfigError(
            f"max_cost_usd is set but model {model!r} has no known price; add "
            f'lm.prices = {{"{model}": [usd_per_1k_prompt, usd_per_1k_completion]}} to the run config'
        )
    if not prices or prices == config.lm.get("prices"):
        return config
    return RunConfig.from_dict({**config.to_dict(), "lm": {**config.lm, "prices": prices}})


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


async def _drive(
    store: EventStore, agents: Agents, run_id: str, progress: bool, after: int = 0, notify: Notify | None = None
) -> Event:
    """Run the agents to the run's end, with the progress view and the alerts beside them."""
    notified = anyio.Event()

    async def notifier(n: Notify) -> None:
        try:
            await run_notifier(store, run_id, n)  # alerts ``interrupted`` itself when cancelled
        except Exception:  # an alert is never worth the run
            log.exception("notify.crashed")
        finally:
            notified.set()

    async with anyio.create_task_group() as tg:
        if progress:
            tg.start_soon(report_progress, store, run_id)
        if notify is not None:
            tg.start_soon(notifier, notify)
        final = await run_agents(agents, run_id, after=after)
        if notify is not None:
            with anyio.move_on_after(notify.timeout_s + 5):  # the end's alert (bounded by its timeout)
                await notified.wait()
        tg.cancel_scope.cancel()
    return final


async def start_and_run(
    store: EventStore,
    req: RunRequest,
    *,
    progress: bool = True,
    on_started: Callable[[str], Awaitable[None]] | None = None,
    notify: Notify | None = None,
) -> Event:
    """Record a new run and work on it until it ends; returns ``run.finished`` or ``run.failed``."""
    signer = signer_from_env()
    config, backend = resolve_backend(req.config)
    config = snapshot_prices(config)
    req = RunRequest(req.command, req.seed, config, req.options)
    if backend.offline:
        print("stop: LM backend: offline, no language model (seeded program mutation)", file=sys.stderr)
    try:
        async with open_pool(config) as pool:
            run_id = await new_run_id(store, req, lambda rid: _root(rid, req, pool, backend))
            if on_started is not None:
                await on_started(run_id)
            agents = Agents(
                store,
                pool=pool,
                backend=backend,
                lease_s=config.lease_s,
                signer=signer,
                checkpoint_every=config.checkpoint_every,
            )
            return await _drive(store, agents, run_id, progress, notify=notify)
    finally:
        await _close(backend)


async def _close(backend: LMBackend) -> None:
    close = getattr(backend, "aclose", None)
    if close is not None:
        with anyio.CancelScope(shield=True):
            await close()


async def raise_caps(store: EventStore, run_id: str, changes: dict[str, Any]) -> Event | None:
    """Record ``budget.raised`` with the new caps (None values: unchanged); None if nothing changes."""
    from agents.proposer import run_caps
    from agents.runinfo import run_info

    caps, raised = await run_caps(store, run_id)
    new = caps.raised(changes)
    if new == caps:
        return None
    info = await run_info(store, run_id)
    ev = make_event(
        run_id,
        BudgetRaised(caps=new.to_dict(), previous=caps.to_dict(), index=raised),
        cause=info.root,
        key=f"budget.raised/{raised}",
    )
    return (await store.append([ev]))[0]


async def _resume_point(store: EventStore, run_id: str, caps: dict[str, Any] | None) -> int:
    """The sequence number after which the resumed run's end is looked for; refuses to resume a
    run stopped at a spend cap without raising the cap (it would stop again at once)."""
    ends = await store.read(run_id, types={BudgetExhausted.TYPE, BudgetRaised.TYPE})
    raised = await raise_caps(store, run_id, dict(caps or {}))
    if raised is not None:
        return raised.seq or 0
    if ends and ends[-1].is_a(BudgetExhausted):
        p = ends[-1].decode(BudgetExhausted)
        flag = "--" + p.cap.replace("_", "-")
        raise UsageError(
            f"run {run_id} stopped at its spend cap: {p.message}",
            hint=f"resume with a higher cap, e.g. `stop resume {run_id} {flag} {p.limit * 2:g}`",
        )
    return 0


async def resume_run(
    store: EventStore,
    run_id: str,
    *,
    progress: bool = True,
    names: tuple[str, ...] = AGENTS,
    caps: dict[str, Any] | None = None,
    notify: Notify | None = None,
) -> Event:
    """Continue a run from its log: the agents redo whatever was asked and not answered.
    ``caps`` raises the run's spend caps (recorded as ``budget.raised``)."""
    from agents.runinfo import run_info

    signer = signer_from_env()
    info = await run_info(store, run_id)
    after = await _resume_point(store, run_id, caps)
    config, backend = resolve_backend(info.config)
    if config.lm.get("model") != info.config.lm.get("model"):
        raise ConfigError(
            f"run {run_id} used model {info.config.lm.get('model')!r}; this machine resolves {config.lm.get('model')!r}",
            hint="set OPENAI_MODEL (or the endpoint variables) as they were when the run started",
        )
    try:
        async with open_pool(info.config) as pool:
            agents = Agents(
                store,
                pool=pool,
                backend=backend,
                lease_s=info.config.lease_s,
                signer=signer,
                checkpoint_every=info.config.checkpoint_every,
            )
            return await _drive(store, agents, run_id, progress, after=after, notify=notify)
    finally:
        await _close(backend)
