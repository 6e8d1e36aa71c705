"""Start the four agents for a run (or a whole store) and wait for the run to end."""

from __future__ import annotations

import anyio
import anyio.abc

from agents.checkpoints import DEFAULT_EVERY, record_end_checkpoint, record_interrupted, run_checkpointer
from agents.context import AgentContext
from agents.evaluator import run_evaluator
from agents.meta_evaluator import run_meta_evaluator
from agents.proposer import run_proposer
from agents.runner import run_runner
from events import Event
from events.routing import RUN_STOPS
from events.signing import Signer
from lm import CacheMode, LMBackend
from sandbox import SandboxPool
from store.base import EventStore
from store.errors import StoreUnavailable

__all__ = ("AGENTS", "Agents", "run_agents", "wait_for_end")

AGENTS = ("proposer", "sandbox-runner", "evaluator", "meta-evaluator")
#: A run's end: finished, failed, or stopped at a spend cap (resumable with a raised cap).
_END = RUN_STOPS


class Agents:
    """What the agents need from outside: the store, the sandbox, the model, the replay seam."""

    def __init__(
        self,
        store: EventStore,
        *,
        pool: SandboxPool | None,
        backend: LMBackend | None,
        mode: CacheMode = CacheMode.LIVE,
        recorded: EventStore | None = None,
        re_execute_evaluations: bool = False,
        lease_s: float = 30.0,
        substitutions: dict[str, str] | None = None,
        signer: Signer | None = None,
        checkpoint_every: int = DEFAULT_EVERY,
    ) -> None:
        self.store = store
        self.pool = pool
        self.backend = backend
        self.mode = mode
        self.recorded = recorded
        self.re_execute = re_execute_evaluations
        self.lease_s = lease_s
        self.substitutions = dict(substitutions or {})
        #: signs checkpoints (``STOP_SIGNING_KEY``); None: the run records none
        self.signer = signer
        self.checkpoint_every = checkpoint_every

    def context(self, agent: str, run_id: str | None) -> AgentContext:
        return AgentContext(
            self.store,
            run_id,
            agent,
            recorded=self.recorded,
            re_execute_evaluations=self.re_execute,
            lease_s=self.lease_s,
            substitutions=self.substitutions,
        )

    async def start(self, tg: anyio.abc.TaskGroup, name: str, run_id: str | None) -> None:
        ctx = self.context(name, run_id)
        if name == "proposer":
            await tg.start(
                lambda task_status: run_proposer(
                    ctx, self.backend, mode=self.mode, cache=self.recorded, task_status=task_status
                )
            )
        elif name == "sandbox-runner":
            if self.pool is None:
                raise RuntimeError("the sandbox runner needs a sandbox pool")
            await tg.start(lambda task_status: run_runner(ctx, self.pool, task_status=task_status))  # type: ignore[arg-type]  # anyio types task_status loosely
        elif name == "evaluator":
            await tg.start(lambda task_status: run_evaluator(ctx, task_status=task_status))
        elif name == "meta-evaluator":
            await tg.start(lambda task_status: run_meta_evaluator(ctx, task_status=task_status))
        else:
            raise ValueError(f"unknown agent {name!r}; agents: {', '.join(AGENTS)}")


async def wait_for_end(store: EventStore, run_id: str, after: int = 0) -> Event:
    """The run's first end event after sequence number ``after`` (a resume's starting point)."""
    async for ev in store.subscribe(run_id, types=_END, after=after):
        return ev
    raise RuntimeError("subscription ended")  # pragma: no cover


async def run_agents(agents: Agents, run_id: str, names: tuple[str, ...] = AGENTS, *, after: int = 0) -> Event:
    """Run the named agents on ``run_id`` until it finishes, fails or reaches a spend cap; the
    final event.

    When the log itself cannot be written (disk full, I/O error), every agent stops with the
    store's error; that one error is raised (reported once), not a group of copies of it.

    With a signer, a checkpoint agent signs the head every ``checkpoint_every`` events and the
    run's end (or its interruption) is signed once every agent has stopped."""
    signer = agents.signer
    try:
        async with anyio.create_task_group() as tg:
            for name in names:
                await agents.start(tg, name, run_id)
            if signer is not None:
                await tg.start(run_checkpointer, agents.store, signer, run_id, agents.checkpoint_every)
            final = await wait_for_end(agents.store, run_id, after=after)
            tg.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        if signer is not None:
            await record_interrupted(agents.store, signer, run_id)
        raise
    except BaseExceptionGroup as group:
        store_errors, rest = group.split(StoreUnavailable)
        if store_errors is not None and rest is None:
            first: BaseException = store_errors
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        raise
    if signer is not None:
        await record_end_checkpoint(agents.store, signer, run_id, final.type)
    return final
