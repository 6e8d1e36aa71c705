"""``stop transfer --runs N`` with the offline model: N sessions per task and improver happen
(counted in the log, distinct seeds), the mean and standard deviation are those of the recorded
runs, the paper's Table 1 figures are beside ours, and ``stop estimate`` counts the same sessions."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from agents.transfer import PAPER_TABLE1
from cli.run_cmd import _render_transfer
from store.factory import open_store

REPO = Path(__file__).resolve().parents[2]
TASKS = ["str_grid_dist", "parity_noiseless"]
RUNS = 3
CONFIG = {"meta_utility": {"improver": {"responses_per_call": 2, "lm_calls": 1, "utility_calls": 2}}}


def stop(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=600
    )


async def recorded(db: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """The transfer's improver sessions (payload + key), and each session's solution's scores."""
    store = await open_store(db, create=False, readonly=True)
    try:
        sessions = [
            {**ev.payload, "key": ev.key, "id": ev.id}
            for ev in await store.read(types={"session.requested"})
            if ev.payload["purpose"] == "improve"
        ]
        done = {ev.causation_id: ev for ev in await store.read(types={"session.completed"})}
        requests = {ev.id: ev for ev in await store.read(types={"utility.requested"})}
        scores: dict[str, dict[str, float]] = {}
        for ev in await store.read(types={"utility.evaluated"}):
            req = requests[ev.causation_id]
            for s in sessions:
                d = done.get(s["id"])
                if d is not None and req.causation_id == d.id:
                    scores.setdefault(s["key"], {})[req.payload["split"]] = ev.payload["utility"]
        for s in sessions:
            d = done[s["id"]]
            if d.payload["solution"] is None:
                scores[s["key"]] = {"val": 0.0, "test": 0.0}
        return sessions, scores
    finally:
        await store.aclose()


def test_transfer_runs_each_improver_n_times_and_reports_mean_std_and_the_paper(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps(CONFIG))
    db = tmp_path / "stop.db"
    args = ("--improver", "seed", "--tasks", *TASKS, "--runs", str(RUNS))
    proc = stop("transfer", "--store", str(db), "--config", str(config), *args, "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["status"] == "finished"
    s = out["summary"]
    assert s["runs"] == RUNS and "Table 1" in s["paper_source"]

    sessions, scores = anyio.run(recorded, db)
    per = Counter((x["utility_task"], x["key"].split("/")[1]) for x in sessions)
    assert per == {(t, label): RUNS for t in TASKS for label in ("seed_improver", "improved_improver")}
    assert len({x["seed"] for x in sessions}) == len(sessions)  # distinct, log-derived seeds

    for row in s["tasks"]:
        task = row["task"]
        assert row["paper"] == PAPER_TABLE1[task]
        assert set(row["runs"]) == {"seed_solution", "seed_improver", "improved_improver"}
        for label in ("seed_improver", "improved_improver"):
            keys = [f"{task}/{label}"] + [f"{task}/{label}/{r}" for r in range(1, RUNS)]
            logged = [scores[k] for k in keys]
            assert [{k: r[k] for k in ("val", "test")} for r in row["runs"][label]] == logged
            for split in ("val", "test"):
                values = [r[split] for r in logged]
                assert row["mean"][label][split] == pytest.approx(statistics.fmean(values), abs=1e-12)
                assert row["std"][label][split] == pytest.approx(statistics.stdev(values), abs=1e-12)
                assert row[label][split] == row["mean"][label][split]  # the original keys: the means
        assert len(row["runs"]["seed_solution"]) == RUNS

    capsys.readouterr()
    _render_transfer(s)  # the table the command prints without --json
    table = capsys.readouterr().out
    assert "paper" in table and "Table 1" in table and " ± " in table
    grid = next(line for line in table.splitlines() if line.startswith("str_grid_dist"))
    assert grid.split()[-1] == "0.567" and "0.443" in grid and "0.439" in grid  # the paper's row

    est = stop("estimate", "--config", str(config), "transfer", *args, "--json")
    assert est.returncode == 0, est.stderr
    e = json.loads(est.stdout)
    assert e["runs"] == RUNS and e["per_generation"]["improver_sessions"] == len(sessions)
    assert e["per_generation"]["lm_calls"] == len(sessions) * CONFIG["meta_utility"]["improver"]["lm_calls"]


def test_transfer_refuses_zero_runs(tmp_path: Path) -> None:
    proc = stop("transfer", "--store", str(tmp_path / "s.db"), "--improver", "seed", "--tasks", "maxcut", "--runs", "0")
    assert proc.returncode == 2 and "--runs must be >= 1" in proc.stderr
