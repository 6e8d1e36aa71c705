"""End to end with the offline model: ``stop self-improve`` under tiny budgets, checked from its log.

One real run (a subprocess, as a user starts it) is shared by the tests of this module; each test
shows one property of it from the recorded events, never from what the code is assumed to do.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from agents_helpers import RunLog, lm_calls_of, load_run, stop_cli, stop_json, write_config

TINY: dict[str, Any] = {
    "generations": 2,
    "meta_utility": {
        "tasks": ["parity_noise"],
        "runs": 1,
        "meta_utility_budget": 2,
        "improver": {"responses_per_call": 2, "lm_calls": 1, "utility_calls": 2},
    },
    "session_timeout_s": 120,
}


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], RunLog]:
    tmp = tmp_path_factory.mktemp("agents_e2e")
    db = tmp / "stop.db"
    config = write_config(tmp / "tiny.json", TINY)
    out = stop_json(["self-improve", "--store", str(db), "--config", str(config)])
    return db, out, load_run(db, out["run_id"])


def test_json_output_has_the_run_id_and_summary(offline_run: tuple[Path, dict[str, Any], RunLog]) -> None:
    """``--json`` prints the run id, the final status and the per-generation summary, and the
    summary is exactly what the log's ``run.finished`` recorded."""
    _, out, log = offline_run
    assert out["command"] == "self-improve" and out["status"] == "finished"
    assert out["run_id"] == log.root.run_id
    rows = out["summary"]["generations"]
    assert [r["generation"] for r in rows] == [0, 1, 2]
    assert out["summary"]["final_improver"] == rows[-1]["improver"]
    (finished,) = log.of("run.finished")
    assert finished.payload["summary"] == out["summary"]
    assert not log.of("run.failed")


def test_stop_runs_lists_the_run(offline_run: tuple[Path, dict[str, Any], RunLog]) -> None:
    """``stop runs --json`` lists the run as a finished self-improve with its event count."""
    db, out, log = offline_run
    proc = stop_cli(["runs", "--store", str(db), "--json"])
    assert proc.returncode == 0, proc.stderr
    rows = {r["run_id"]: r for r in json.loads(proc.stdout)}
    row = rows[out["run_id"]]
    assert row["command"] == "self-improve" and row["status"] == "finished" and row["seed"] == 0
    assert row["events"] == len(log.events)
    text = stop_cli(["runs", "--store", str(db)]).stdout
    assert out["run_id"] in text


def test_every_improver_ran_in_the_sandbox(offline_run: tuple[Path, dict[str, Any], RunLog]) -> None:
    """Every improver session was claimed by a sandbox-runner worker, scanned as an improver
    before it ran and completed exactly once; the run's first event shows the isolation in force
    (namespaces or Landlock active, unsafe mode off), so no improver text ran outside it."""
    _, _, log = offline_run
    sandbox = log.root.payload["host"]["sandbox"]
    assert sandbox["isolated"] is True and sandbox["unsafe_no_sandbox"] is False
    active = {name for name, layer in sandbox["layers"].items() if layer["active"]}
    assert active & {"bubblewrap", "landlock"}, sandbox
    assert log.root.payload["config"]["unsafe_no_sandbox"] is False

    sessions = log.of("session.requested")
    purposes = Counter(s.payload["purpose"] for s in sessions)
    # One session per generation; one meta-utility run per (task, run) of every meta-utility
    # request (the seed's, each candidate's, and those the generation sessions made).
    metas = [e for e in log.of("utility.requested") if e.payload["task"] == "meta"]
    per_meta = TINY["meta_utility"]["runs"] * len(TINY["meta_utility"]["tasks"])
    assert purposes == {"generation": 2, "meta_run": per_meta * len(metas)}
    assert all(len(log.children(m, "session.requested")) == per_meta for m in metas)
    for s in sessions:
        assert len(log.children(s, "session.completed")) == 1, s.payload
        claims = log.children(s, "work.claimed")
        assert claims and all(c.payload["worker"].startswith("sandbox-runner@") for c in claims)
        (scan,) = log.children(s, "program.scanned")
        assert scan.payload["role"] == "improver" and scan.payload["program"] == s.payload["improver"]
    # The solutions the improvers returned ran in the sandbox too (batches claimed by the runner).
    for b in log.of("sandbox.batch.requested"):
        assert len(log.children(b, "sandbox.batch.completed")) == 1
        assert all(c.payload["worker"].startswith("sandbox-runner@") for c in log.children(b, "work.claimed"))
        assert [s.payload["role"] for s in log.children(b, "program.scanned")] == ["solution"]
    # Improver texts only ever reach the sandbox through session.requested: every improver the
    # run adopted or scored is one that some session ran.
    ran = {s.payload["improver"] for s in sessions}
    for g in log.of("generation.started"):
        assert g.payload["improver"] in ran
    for meta in (e for e in log.of("utility.requested") if e.payload["task"] == "meta"):
        assert meta.payload["solution"] in ran


def test_meta_utility_scored_every_generation(offline_run: tuple[Path, dict[str, Any], RunLog]) -> None:
    """Each generation's improver (the seed's and every candidate's) has a ``utility.evaluated``
    with task "meta", and the decisions and the summary use those numbers."""
    _, out, log = offline_run
    meta_evals = {
        log.parent(e).payload["solution"]: e  # type: ignore[union-attr]
        for e in log.of("utility.evaluated")
        if e.payload["task"] == "meta"
    }
    gens = log.of("generation.started")
    assert [g.payload["generation"] for g in gens] == [0, 1]
    for g in gens:
        assert g.payload["improver"] in meta_evals
    decisions = log.of("improver.decided")
    assert len(decisions) == len(gens)
    for d in decisions:
        cand = d.payload["candidate"]
        assert cand is not None and cand in meta_evals
        assert d.payload["meta_val"] == meta_evals[cand].payload["detail"]["val"]
        assert d.payload["meta_test"] == meta_evals[cand].payload["detail"]["test"]
    rows = out["summary"]["generations"]
    seed = meta_evals[gens[0].payload["improver"]].payload["detail"]
    assert rows[0]["meta_val"] == seed["val"] and rows[0]["meta_test"] == seed["test"]
    for e in meta_evals.values():
        detail = e.payload["detail"]
        assert 0.0 <= detail["val"] <= 1.0 and 0.0 <= detail["test"] <= 1.0
        assert len(detail["runs"]) == TINY["meta_utility"]["runs"] * len(TINY["meta_utility"]["tasks"])


def test_budgets_were_never_exceeded(offline_run: tuple[Path, dict[str, Any], RunLog]) -> None:
    """Per session, the LM calls (``lm.requested`` grouped by call) and ``utility.requested``
    events stay within the session's budgets, the counts reported by ``session.completed``
    match the log, responses per call stay within ``responses_per_call``, and every refusal
    there was is a ``budget.exceeded`` event under its session at the limit."""
    _, _, log = offline_run
    budget = TINY["meta_utility"]["improver"]
    for s in log.of("session.requested"):
        p = s.payload
        expected_utility = (
            TINY["meta_utility"]["meta_utility_budget"] if p["purpose"] == "generation" else budget["utility_calls"]
        )
        assert p["lm_calls"] == budget["lm_calls"] and p["utility_calls"] == expected_utility
        assert p["responses_per_call"] == budget["responses_per_call"]
        (done,) = log.children(s, "session.completed")
        calls = lm_calls_of(log, s)
        utilities = log.children(s, "utility.requested")
        assert calls <= p["lm_calls"] and done.payload["lm_calls"] == calls
        assert len(utilities) <= p["utility_calls"] and done.payload["utility_calls"] == len(utilities)
        for req in log.children(s, "lm.requested"):
            assert req.payload["request"]["n"] <= p["responses_per_call"]
            assert len(log.children(req, {"lm.responded", "lm.failed"})) == 1
        for u in utilities:
            assert len(log.children(u, "utility.evaluated")) == 1
    for refusal in log.of("budget.exceeded"):
        session = log.parent(refusal)
        assert session is not None and session.type == "session.requested"
        assert refusal.payload["used"] >= refusal.payload["limit"]
    # Every LM answer came from the offline model (or its cache), no endpoint was configured.
    assert log.root.payload["host"]["lm"]["kind"] == "offline"
    assert all(r.payload["produced_by"] for r in log.of("lm.responded"))
