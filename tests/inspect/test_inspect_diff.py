"""``stop diff``: the first differing event is named, with both payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from inspect_cli import run_cli
from inspect_synth import C2, h, self_improve_run, write

from replay.diff import diff_runs
from store import MemoryStore

pytestmark = pytest.mark.anyio


async def test_diff_names_first_differing_event() -> None:
    store = MemoryStore()
    await write(store, self_improve_run("a"))
    stored_b = await write(store, self_improve_run("b", c2_utility=0.15))
    res = await diff_runs(store, "a", store, "b")
    assert not res.same and res.differences == 1 and res.compared == 53
    d = res.first
    assert d is not None and d.kind == "payload" and d.type == "utility.evaluated"
    req_b = next(e for e in stored_b if e.type == "utility.requested" and e.payload["solution"] == h(C2))
    assert d.event_b is not None and d.event_b.causation_id == req_b.id
    assert [t for t, _ in d.path] == [
        "run.started",
        "generation.started",
        "session.requested",
        "utility.requested",
        "utility.evaluated",
    ]
    assert '-  "utility": 0.1\n' in d.payload_diff and '+  "utility": 0.15\n' in d.payload_diff
    assert "first divergence (payload)" in res.render()


async def test_identical_runs_do_not_part_and_missing_events_are_named() -> None:
    store = MemoryStore()
    await write(store, self_improve_run("a"))
    await write(store, self_improve_run("c"))
    same = await diff_runs(store, "a", store, "c")
    assert same.same and same.differences == 0
    truncated = self_improve_run("t")
    truncated.events = truncated.events[:-1]  # no run.finished
    await write(store, truncated)
    res = await diff_runs(store, "a", store, "t")
    assert res.first is not None and res.first.kind == "only_a" and res.first.type == "run.finished"
    assert res.first.event_b is None


async def test_differing_programs_show_blob_diff() -> None:
    """A changed seed program differs at generation 0; the blob texts are diffed too."""
    import inspect_synth

    store = MemoryStore()
    await write(store, self_improve_run("a"))
    old = inspect_synth.I0
    try:
        inspect_synth.I0 = old.replace("return initial_solution", "return initial_solution  # v2")
        await write(store, inspect_synth.self_improve_run("b"))
    finally:
        inspect_synth.I0 = old
    res = await diff_runs(store, "a", store, "b")
    assert res.first is not None and res.first.type == "generation.started"
    assert "+    return initial_solution  # v2" in res.first.blob_diffs["improver"]


def test_cli_diff_across_stores(make_db: Any, capsys: pytest.CaptureFixture[str]) -> None:
    db1: Path = make_db("one.db", [("run-a", 0.1)])
    db2: Path = make_db("two.db", [("run-x", 0.3)])
    assert run_cli(["diff", "run-a", "run-x", "--store", str(db1), "--store-b", str(db2), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["first"]["type"] == "utility.evaluated"
    assert out["first"]["payload_a"]["utility"] == 0.1 and out["first"]["payload_b"]["utility"] == 0.3
    assert run_cli(["diff", "run-a", "run-a", "--store", str(db1)]) == 0
    assert "do not part" in capsys.readouterr().out
