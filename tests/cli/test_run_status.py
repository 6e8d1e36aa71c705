"""``agents.run_status``: the status a run's log implies, including run-level status events."""

from __future__ import annotations

from typing import Any

import pytest

from agents import run_status
from agents.run_status import run_outcome
from events import make_event
from events.registry import Payload, payload
from events.types import RunFinished, RunStarted
from outcome import ExitCode, Status
from store import MemoryStore

pytestmark = pytest.mark.anyio


@payload("test.cap_reached")
class CapReached(Payload):
    message: str


async def _run(command: str, summary: dict[str, Any], *extra: Payload) -> tuple[MemoryStore, Any]:
    store = MemoryStore()
    root = make_event("r", RunStarted(command=command, seed=0, config={}, host={}), cause=None, key=0)
    events = [root] + [make_event("r", p, cause=root, key=f"x{i}") for i, p in enumerate(extra)]
    final = make_event("r", RunFinished(summary=summary), cause=root, key="finished")
    await store.append([*events, final])
    return store, final


async def test_a_run_level_event_decides_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(run_status.RUN_LEVEL_STATUS, "test.cap_reached", Status.BUDGET_EXHAUSTED)
    store, final = await _run("transfer", {"tasks": []}, CapReached(message="max_cost_usd 1.00 reached"))
    out = await run_outcome(store, "r", final)
    assert out.status == Status.BUDGET_EXHAUSTED and out.exit_code == ExitCode.FAILED
    assert out.reason == "max_cost_usd 1.00 reached"
    assert [(e.kind, e.message) for e in out.errors] == [("test.cap_reached", "max_cost_usd 1.00 reached")]


async def test_budget_exhausted_is_mapped_by_name() -> None:
    assert run_status.RUN_LEVEL_STATUS["budget.exhausted"] == Status.BUDGET_EXHAUSTED


async def test_interrupted_and_judged_statuses() -> None:
    store, final = await _run("improve", {"session_status": "error", "solution": None})
    assert (await run_outcome(store, "r", None)).status == Status.INTERRUPTED
    out = await run_outcome(store, "r", final)
    assert out.status == Status.FAILED and "improvement failed" in out.reason
    store, final = await _run("improve", {"session_status": "ok", "solution": "abc"})
    assert (await run_outcome(store, "r", final)).status == Status.FINISHED
    rows = [{"generation": 0, "candidate": None}, {"generation": 1, "candidate": None}]
    store, final = await _run("self-improve", {"generations": rows})
    assert (await run_outcome(store, "r", final)).status == Status.FAILED
    rows[1]["candidate"] = "abc"
    store, final = await _run("self-improve", {"generations": rows})
    assert (await run_outcome(store, "r", final)).status == Status.FINISHED
