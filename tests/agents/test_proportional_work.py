"""An agent's work per trigger is proportional to what the trigger changed (issue 14).

A paper-scale run is thousands of triggers; an agent that re-derives a run's state, or asks
the store what it already knows, on every one of them burns the CPU the sandbox workers need.
These tests count what one trigger costs (store calls, event identities computed, folds) and
check that the shortcuts never change what is recorded: a fresh context, which knows nothing
and takes the long way, writes the same log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import agents.steps
from agents.claims import try_claim
from agents.config import RunConfig
from agents.context import AgentContext
from agents.meta_evaluator import _moves_workflow, _session_call_answer
from agents.metautility import progress_meta
from agents.runner import _scan_event
from agents.steps import ensure
from agents.tasks_view import fold_recorded
from events import Event, make_event
from events.stop_events import (
    ProgramScanned,
    SandboxBatchCompleted,
    SandboxBatchRequested,
    SessionCompleted,
    SessionRequested,
    UtilityEvaluated,
    UtilityRequested,
    WorkClaimed,
)
from events.types import RunStarted
from sandbox import JobResult
from store import ConflictError, MemoryStore

RUN = "self-improve-proportional"
pytestmark = pytest.mark.anyio


class CountingStore(MemoryStore):
    """A memory store that counts the calls agents make to it, by method."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def append(self, events: Any, **kw: Any) -> list[Event]:
        self.calls["append"] += 1
        return await super().append(events, **kw)

    async def read(self, *a: Any, **kw: Any) -> list[Event]:
        self.calls["read"] += 1
        return await super().read(*a, **kw)

    async def get(self, event_id: str) -> Event | None:
        self.calls["get"] += 1
        return await super().get(event_id)

    async def children(self, *a: Any, **kw: Any) -> list[Event]:
        self.calls["children"] += 1
        return await super().children(*a, **kw)

    async def get_blob(self, digest: str) -> bytes:
        self.calls["get_blob"] += 1
        return await super().get_blob(digest)


def _root(runs: int = 3) -> Event:
    config = RunConfig.from_dict({"meta_utility": {"tasks": ["parity_noise"], "runs": runs}}).to_dict()
    config["options"] = {}
    return make_event(RUN, RunStarted(command="self-improve", seed=3, config=config, host={}), cause=None, key=0)


def _meta_request(root: Event) -> Event:
    return make_event(RUN, UtilityRequested(task="meta", split="val", solution="f" * 64, seed=1), cause=root, key="m")


def _session_done(session: Event, solution: str | None) -> Event:
    return make_event(
        RUN,
        SessionCompleted(
            status="ok" if solution else "error",
            solution=solution,
            error="",
            lm_calls=0,
            utility_calls=0,
            violations=[],
            wall_s=0.0,
            cpu_s=0.0,
            stdout_tail="",
            error_kind="",
            traceback=None,
        ),
        cause=session,
        key="result",
    )


def _scored(request: Event, utility: float) -> Event:
    p = request.decode(UtilityRequested)
    return make_event(
        RUN,
        UtilityEvaluated(task=p.task, split=p.split, utility=utility, detail={}, outcomes=None),
        cause=request,
        key="result",
    )


async def _trigger(ctx: AgentContext, request: Event) -> None:
    """What the meta-evaluator does on a trigger under a meta-utility request."""
    await ctx.runs.refreshed_view(RUN)
    await progress_meta(ctx, request)


def _identities(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the event identities ``ensure`` computes."""
    made: Counter[str] = Counter()
    real = agents.steps.make_event

    def counting(*a: Any, **kw: Any) -> Event:
        made["make_event"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(agents.steps, "make_event", counting)
    return made


async def _drive(ctx_of: Callable[[], AgentContext], store: MemoryStore) -> Event:
    """Play the sandbox and the evaluator for one meta-utility request, one answer per trigger:
    sessions end (the last one without a solution), then their scores come back."""
    root = _root()
    meta = _meta_request(root)
    await store.append([root, meta])
    await _trigger(ctx_of(), meta)
    sessions = [e for e in await store.read(RUN) if e.is_a(SessionRequested)]
    for i, s in enumerate(sessions):
        await store.append([_session_done(s, None if i == len(sessions) - 1 else f"{i:064d}")])
        await _trigger(ctx_of(), meta)
    scores = [e for e in await store.read(RUN) if e.is_a(UtilityRequested) and e.causation_id != root.id]
    for i, u in enumerate(scores):
        await store.append([_scored(u, 0.1 * (i + 1))])
        await _trigger(ctx_of(), meta)
    (answer,) = await store.children(meta.id, {UtilityEvaluated.TYPE})
    return answer


async def test_a_meta_utility_walks_only_its_pending_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a downstream run is final (its session ended and its scores are in), no later
    trigger computes an identity for it or asks the store about it; a trigger that changed
    nothing computes none at all. The answer is the one a fresh context per trigger records."""
    made = _identities(monkeypatch)
    kept_store = CountingStore()
    kept = AgentContext(kept_store, None, "meta-evaluator")
    root = _root()
    meta = _meta_request(root)
    await kept_store.append([root, meta])
    await _trigger(kept, meta)
    sessions = [e for e in await kept_store.read(RUN) if e.is_a(SessionRequested)]
    assert len(sessions) == 3 and made["make_event"] == 3

    made.clear()
    await _trigger(kept, meta)  # nothing changed
    assert made["make_event"] == 0

    await kept_store.append([_session_done(sessions[0], "a" * 64)])
    made.clear()
    await _trigger(kept, meta)  # run 0 ended: its two score requests, nothing else
    assert made["make_event"] == 2
    scores = [e for e in await kept_store.read(RUN) if e.is_a(UtilityRequested) and e.causation_id != root.id]
    await kept_store.append([_scored(u, 0.5) for u in scores])
    made.clear()
    kept_store.calls.clear()
    await _trigger(kept, meta)  # run 0 is final now
    await _trigger(kept, meta)
    assert made["make_event"] == 0
    # Only the view's catching up reads the store; nothing is looked up event by event.
    assert kept_store.calls == Counter({"read": 2}), kept_store.calls
    assert (run0 := kept.runs.view(RUN).meta_tallies[meta.id].rows[("parity_noise", 0)])["val"] == 0.5
    assert run0["test"] == 0.5


async def test_the_tallied_walk_records_what_fresh_contexts_record() -> None:
    kept_store, fresh_store = MemoryStore(), MemoryStore()
    kept = AgentContext(kept_store, None, "meta-evaluator")
    fresh: list[AgentContext] = []

    def new_context() -> AgentContext:
        fresh.append(AgentContext(fresh_store, None, "meta-evaluator"))
        return fresh[-1]

    a = await _drive(lambda: kept, kept_store)
    b = await _drive(new_context, fresh_store)
    assert len(fresh) > 5
    assert a.same_content(b)
    detail = a.decode(UtilityEvaluated).detail
    assert [r["run"] for r in detail["runs"]] == [0, 1, 2]
    assert detail["runs"][2] == {"task": "parity_noise", "run": 2, "status": "error", "val": 0.0, "test": 0.0}
    assert sorted((e.id, e.hash) for e in await kept_store.read(RUN)) == sorted(
        (e.id, e.hash) for e in await fresh_store.read(RUN)
    )


async def test_ensure_appends_without_reading_first_and_still_refuses_a_different_decision() -> None:
    store = CountingStore()
    ctx = AgentContext(store, None, "meta-evaluator")
    root = _root()
    await store.append([root])
    store.calls.clear()
    data = UtilityRequested(task="parity_noise", split="val", solution="a" * 64, seed=1)
    first = await ensure(ctx, RUN, data, cause=root, key="k")
    assert store.calls == Counter({"append": 1})
    assert await ensure(ctx, RUN, data, cause=root, key="k") == first  # from the view
    assert store.calls == Counter({"append": 1})
    # Recorded by another copy of the logic (not in this context's view): the store's
    # idempotent append returns the stored event.
    other = AgentContext(store, None, "meta-evaluator")
    assert (await ensure(other, RUN, data, cause=root, key="k")).seq == first.seq
    changed = UtilityRequested(task="parity_noise", split="val", solution="b" * 64, seed=1)
    with pytest.raises(ConflictError, match="decisions diverged"):
        await ensure(AgentContext(store, None, "x"), RUN, changed, cause=root, key="k")
    with pytest.raises(ConflictError, match="decisions diverged"):
        await ensure(ctx, RUN, changed, cause=root, key="k")


async def test_an_improvers_own_call_is_told_apart_in_memory() -> None:
    """The answer to a call a running improver made moves no workflow and no meta-utility; with
    the request and the session in the view, telling so asks the store nothing."""
    store = CountingStore()
    ctx = AgentContext(store, None, "meta-evaluator")
    root = _root()
    meta = _meta_request(root)
    await store.append([root, meta])
    await _trigger(ctx, meta)
    session = next(e for e in await store.read(RUN) if e.is_a(SessionRequested))
    call = make_event(
        RUN, UtilityRequested(task="parity_noise", split="val", solution="c" * 64, seed=2), cause=session, key="u"
    )
    answer = _scored(call, 0.3)
    done = _session_done(session, "d" * 64)
    await store.append([call, answer, done])
    view = ctx.runs.view(RUN)
    view.add(call)  # as the meta-evaluator does when the request comes by
    get = view.getter(store).get
    store.calls.clear()
    assert await _session_call_answer(get, answer)
    assert not await _moves_workflow(get, answer)
    assert store.calls == Counter()
    # A meta_run session's end is not a session's call: it moves the meta-utility.
    await view.refresh(store, RUN)
    assert not await _session_call_answer(get, done)
    # Without the view, the same answer is still told apart (through the store).
    cold = AgentContext(store, None, "meta-evaluator").runs.view(RUN).getter(store).get
    assert await _session_call_answer(cold, answer)


def _result(value: list[int]) -> JobResult:
    return JobResult.from_json({"status": "ok", "value": value, "call_time_s": 0.01, "wall_time_s": 0.02})


async def test_a_batch_is_folded_once_per_recorded_results() -> None:
    """The fold is a pure function of (task, split, results): folding the same recorded results
    again (a replay in the same process) loads and folds nothing, and each caller gets its own
    detail to add to."""
    from tasks import get_task

    task = get_task("parity_noise")
    n = task.split_sizes["val"]
    results = [_result([0] * 10) for _ in range(n)]
    loads = Counter[str]()

    async def load() -> list[JobResult]:
        loads["load"] += 1
        return results

    digest = "1" * 64
    a = await fold_recorded("parity_noise", "val", digest, load)
    b = await fold_recorded("parity_noise", "val", digest, load)
    assert loads["load"] == 1
    assert (a.utility, a.outcomes, a.outcomes_blob) == (b.utility, b.outcomes, b.outcomes_blob)
    assert a.utility == task.fold("val", results).utility
    a.detail["statuses"] = {"ok": n}
    assert "statuses" not in b.detail
    await fold_recorded("parity_noise", "val", "2" * 64, load)  # other results: folded
    assert loads["load"] == 2


async def _batch(store: MemoryStore) -> Event:
    root = _root()
    ureq = make_event(
        RUN, UtilityRequested(task="parity_noise", split="val", solution="e" * 64, seed=0), cause=root, key="u"
    )
    batch = make_event(
        RUN, SandboxBatchRequested(task="parity_noise", split="val", solution="e" * 64, seed=0), cause=ureq, key="batch"
    )
    await store.append([root, ureq, batch])
    return batch


async def test_a_batchs_scan_is_recorded_in_its_claims_transaction() -> None:
    store = CountingStore()
    batch = await _batch(store)
    done = {SandboxBatchCompleted.TYPE}
    scan = _scan_event(batch, "def algorithm(x):\n    return x\n", "e" * 64, "solution")
    winner = AgentContext(store, None, "sandbox-runner")
    store.calls.clear()
    claim = await try_claim(winner, batch, done, with_claim=[scan])
    assert claim.event is not None
    assert store.calls["append"] == 1  # claim and scan: one transaction, one wake-up
    kids = await store.children(batch.id)
    assert [k.type for k in kids] == [WorkClaimed.TYPE, ProgramScanned.TYPE]
    # The loser of the claim records nothing (its scan would be the same event anyway).
    loser = AgentContext(store, None, "sandbox-runner")
    other_batch = await _batch(MemoryStore())  # same identity, another store: not claimed there
    assert other_batch.id == batch.id
    assert (await try_claim(loser, batch, done, with_claim=[scan])).event is None
    assert len(await store.children(batch.id)) == 2


async def test_a_scan_recorded_differently_before_does_not_block_the_claim() -> None:
    """A resume under another scanner: the old scan stays, the work is still claimed."""
    store = MemoryStore()
    batch = await _batch(store)
    old = make_event(
        RUN, ProgramScanned(program="e" * 64, role="solution", findings=[], categories=["old"]), cause=batch, key="scan"
    )
    await store.append([old])
    scan = _scan_event(batch, "def algorithm(x):\n    return x\n", "e" * 64, "solution")
    assert scan.id == old.id and not scan.same_content(old)
    claim = await try_claim(
        AgentContext(store, None, "sandbox-runner"), batch, {SandboxBatchCompleted.TYPE}, with_claim=[scan]
    )
    assert claim.event is not None
    kids = await store.children(batch.id)
    assert [k.type for k in kids] == [ProgramScanned.TYPE, WorkClaimed.TYPE]
    assert kids[0].same_content(old)


async def test_the_answer_waiter_follows_only_the_answers_it_serves() -> None:
    """The runner's waiter reads answers, not every event of the run; a wait for a type it does
    not follow is refused instead of hanging; an answer appended while waiting is delivered."""
    import anyio

    from agents.context import AnswerWaiter

    store = CountingStore()
    root = _root()
    await store.append([root])
    waiter = AnswerWaiter(store, RUN, types={UtilityEvaluated.TYPE})
    request = make_event(
        RUN, UtilityRequested(task="parity_noise", split="val", solution="a" * 64, seed=0), cause=root, key="r"
    )
    await store.append([request])
    seen: list[Event] = []
    real = store.subscribe

    async def subscribe(*a: Any, **kw: Any) -> AsyncIterator[Event]:
        async for ev in real(*a, **kw):
            seen.append(ev)
            yield ev

    store.subscribe = subscribe  # type: ignore[method-assign]  # spy on what the subscription yields
    with anyio.fail_after(2), pytest.raises(ValueError, match="follows"):
        await waiter.wait(request.id, {SessionCompleted.TYPE})
    async with anyio.create_task_group() as tg:
        await tg.start(waiter.run)
        got: list[Event] = []
        answered = anyio.Event()

        async def wait() -> None:
            got.append(await waiter.wait(request.id, {UtilityEvaluated.TYPE}))
            answered.set()

        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        noise = make_event(
            RUN, UtilityRequested(task="parity_noise", split="test", solution="b" * 64, seed=0), cause=root, key="n"
        )
        await store.append([noise, _scored(request, 0.25)])
        with anyio.fail_after(5):
            await answered.wait()
        tg.cancel_scope.cancel()
    assert got[0].decode(UtilityEvaluated).utility == 0.25
    assert {e.type for e in seen} == {UtilityEvaluated.TYPE}
