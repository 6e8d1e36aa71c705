"""Run state hangs on the agent context (``ctx.runs``), not on module globals: runs on two
stores, or two runs on one store, in one process never see each other's state, and a fresh
context rebuilds the same projection (and so the same decisions) from the log alone.

The workflow here is the real ``stop improve`` one (``agents.workflows.progress``); the other
agents are played by hand: every open utility request and session gets an answer whose value
says which store it was written to, so any state leaking between stores shows in the results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from agents.config import RunConfig
from agents.context import AgentContext
from agents.runs import RunMemory
from agents.workflows import WORKFLOWS, progress
from events import Event, make_event
from events.routing import ROLES, RUN_ENDS, WORKFLOW_VIEW
from events.stop_events import SessionCompleted, SessionRequested, UtilityEvaluated, UtilityRequested
from events.types import RunStarted
from store import SqliteStore
from store.base import EventStore

RUN = "improve-memory"


def _root(run_id: str, seed: int, task: str = "parity_noise") -> Event:
    config = RunConfig().to_dict()
    config["options"] = {"task": task}
    return make_event(run_id, RunStarted(command="improve", seed=seed, config=config, host={}), cause=None, key=0)


async def _answer_open_requests(store: EventStore, run_id: str, utility: float) -> int:
    """Play the evaluator and the runner: answer every unanswered request of the run."""
    events = await store.read(run_id)
    answered = {e.causation_id for e in events if ROLES[e.type].answers is not None}
    new: list[Event] = []
    for ev in events:
        if ev.id in answered:
            continue
        if ev.type == UtilityRequested.TYPE:
            req = ev.decode(UtilityRequested)
            data: UtilityEvaluated | SessionCompleted = UtilityEvaluated(
                task=req.task, split=req.split, utility=utility, detail={}, outcomes=None
            )
        elif ev.type == SessionRequested.TYPE:
            data = SessionCompleted(
                status="ok",
                solution=ev.decode(SessionRequested).initial_solution,
                error="",
                lm_calls=0,
                utility_calls=0,
                violations=[],
                wall_s=0.0,
                cpu_s=0.0,
                stdout_tail="",
                error_kind="",
                traceback=None,
            )
        else:
            continue
        new.append(make_event(run_id, data, cause=ev, key="result"))
    if new:
        await store.append(new)
    return len(new)


@asynccontextmanager
async def _stores(tmp_path: Path, *names: str) -> AsyncIterator[dict[str, EventStore]]:
    async with AsyncExitStack() as stack:
        yield {n: await stack.enter_async_context(await SqliteStore.open(tmp_path / f"{n}.db")) for n in names}


async def _drive(runs: list[tuple[Callable[[], AgentContext], str, float]]) -> None:
    """Round by round, interleaved: each run's workflow decides, then its requests are answered."""
    for _ in range(10):
        for ctx_of, run_id, utility in runs:
            ctx = ctx_of()
            await progress(ctx, run_id)
            await _answer_open_requests(ctx.store, run_id, utility)
        ends = [await ctx_of().store.read(run_id, types=RUN_ENDS) for ctx_of, run_id, _ in runs]
        if all(ends):
            return
    raise AssertionError("the runs did not finish")


async def _summary(store: EventStore, run_id: str) -> dict[str, object]:
    (end,) = await store.read(run_id, types=RUN_ENDS)
    assert end.type == "run.finished", end.payload
    return dict(end.payload["summary"])


@pytest.mark.anyio
async def test_runs_on_two_stores_and_on_one_store_share_no_state(tmp_path: Path) -> None:
    """Store "a" holds two runs (one context serves both, as the meta-evaluator's does); store
    "b" holds a run with the same id as a's first but another task. Identities derive from
    causes and keys, not contents, so every event id is the same in both stores while their
    contents (task, utilities) differ: each run's result has its own."""
    async with _stores(tmp_path, "a", "b") as stores:
        await stores["a"].append([_root(RUN, seed=0)])
        await stores["a"].append([_root(f"{RUN}-2", seed=1)])
        await stores["b"].append([_root(RUN, seed=0, task="maxcut")])
        ctx_a = AgentContext(stores["a"], None, "meta-evaluator")
        ctx_b = AgentContext(stores["b"], None, "meta-evaluator")
        await _drive([(lambda: ctx_a, RUN, 0.25), (lambda: ctx_a, f"{RUN}-2", 0.5), (lambda: ctx_b, RUN, 0.75)])

        for store, run_id, utility in (
            (stores["a"], RUN, 0.25),
            (stores["a"], f"{RUN}-2", 0.5),
            (stores["b"], RUN, 0.75),
        ):
            summary = await _summary(store, run_id)
            assert summary["task"] == ("maxcut" if store is stores["b"] else "parity_noise")
            assert summary["before"] == summary["after"] == {"val": utility, "test": utility}, (run_id, summary)
        a_ids = {e.id for e in await stores["a"].read(RUN)}
        assert a_ids == {e.id for e in await stores["b"].read(RUN)}  # same decisions, same identities
        assert ctx_a.runs is not ctx_b.runs
        # Each view holds exactly its own run's workflow events, from its own store.
        for ctx, run_id in ((ctx_a, RUN), (ctx_a, f"{RUN}-2"), (ctx_b, RUN)):
            view = ctx.runs.view(run_id)
            stored = {e.id: e for e in await ctx.store.read(run_id, types=WORKFLOW_VIEW)}
            assert set(view.by_id) == set(stored)
            assert all(view.by_id[i].hash == stored[i].hash for i in stored)
            assert {e.run_id for e in view.by_id.values()} == {run_id}


@pytest.mark.anyio
async def test_a_fresh_context_rebuilds_the_projection_from_the_log(tmp_path: Path) -> None:
    """One run is driven by one long-lived context; a copy of it (same root, same answers) on
    another store by a brand-new context at every step. Both logs come out identical, and a new
    context's view of the finished run equals the long-lived one's."""
    async with _stores(tmp_path, "kept", "fresh") as stores:
        for store in stores.values():
            await store.append([_root(RUN, seed=7)])
        kept = AgentContext(stores["kept"], None, "meta-evaluator")
        made: list[AgentContext] = []

        def fresh() -> AgentContext:
            made.append(AgentContext(stores["fresh"], None, "meta-evaluator"))
            return made[-1]

        await _drive([(lambda: kept, RUN, 0.5), (fresh, RUN, 0.5)])
        assert len(made) > 4  # the copy really was driven by many contexts
        kept_log = [(e.id, e.hash) for e in await stores["kept"].read(RUN)]
        assert kept_log == [(e.id, e.hash) for e in await stores["fresh"].read(RUN)]

        rebuilt = await RunMemory(stores["kept"]).refreshed_view(RUN)
        view = kept.runs.view(RUN)
        assert set(rebuilt.by_id) == set(view.by_id)
        assert {k: [e.id for e in v] for k, v in rebuilt.kids.items()} == {
            k: [e.id for e in v] for k, v in view.kids.items() if v
        }
        # A new context re-walks every decision of the finished run from the log: all found, none new.
        again = AgentContext(stores["kept"], None, "meta-evaluator")
        await again.runs.refreshed_view(RUN)
        await WORKFLOWS["improve"](again, await again.runs.info(RUN))
        assert [(e.id, e.hash) for e in await stores["kept"].read(RUN)] == kept_log


def test_a_context_refuses_the_memory_of_another_store() -> None:
    class _Store:  # only its identity matters here
        pass

    one, other = _Store(), _Store()
    with pytest.raises(ValueError, match="own store"):
        AgentContext(one, None, "x", memory=RunMemory(other))  # type: ignore[arg-type]  # identity-only stand-ins
    shared = RunMemory(one)  # type: ignore[arg-type]  # identity-only stand-in
    a = AgentContext(one, None, "a", memory=shared)  # type: ignore[arg-type]  # identity-only stand-in
    b = AgentContext(one, None, "b", memory=shared)  # type: ignore[arg-type]  # identity-only stand-in
    assert a.runs is b.runs is shared
    assert AgentContext(one, None, "c").runs is not shared  # type: ignore[arg-type]  # identity-only stand-in
