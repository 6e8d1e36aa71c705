"""What an improver is shown is what ``stop tasks show`` prints: a real improver in the sandbox
returns its ``utility.str`` and ``utility.description`` verbatim, and a self-improve run's
sessions (downstream meta runs and the generation session on the meta-utility) carry exactly
the texts ``stop tasks show NAME --json`` gives, the meta one with the run's own budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from cli.main import main
from store.factory import open_store

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).parent / "programs" / "show_utility_improver.py"
CONFIG = {
    "generations": 1,
    "meta_utility": {
        "tasks": ["parity_noise", "maxcut"],
        "runs": 1,
        "meta_utility_budget": 3,
        "improver": {"responses_per_call": 2, "lm_calls": 1, "utility_calls": 4},
    },
}


def stop(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=400
    )


async def shown(db: Path) -> dict[str, list[dict[str, Any]]]:
    """utility_task -> what the probe returned in each session of that task."""
    store = await open_store(db, create=False, readonly=True)
    try:
        requested = {ev.id: ev.payload for ev in await store.read(types={"session.requested"})}
        out: dict[str, list[dict[str, Any]]] = {}
        for ev in await store.read(types={"session.completed"}):
            if ev.payload["solution"] is None or ev.causation_id not in requested:
                continue
            task = requested[ev.causation_id]["utility_task"]
            text = (await store.get_blob(ev.payload["solution"])).decode("utf-8")
            out.setdefault(task, []).append(json.loads(text))
        return out
    finally:
        await store.aclose()


def show(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    with structlog.testing.capture_logs():
        assert main(["tasks", "show", *argv]) == 0
    return capsys.readouterr().out


def test_the_guest_is_shown_exactly_what_stop_tasks_show_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps(CONFIG))
    db = tmp_path / "stop.db"
    run = stop("self-improve", "--store", str(db), "--config", str(config), "--improver", str(PROBE), "--json")
    assert run.returncode in (0, 1), run.stderr[-3000:]
    seen = anyio.run(shown, db)
    assert set(seen) == {"parity_noise", "maxcut", "meta"}, seen.keys()
    for name, key in (("parity_noise", "parity_noise"), ("maxcut", "maxcut"), ("meta_improver", "meta")):
        extra = ["--config", str(config)]
        info = json.loads(show(capsys, name, "--json", *extra))
        for got in seen[key]:
            assert got["str"] == info["utility_str"], key
            assert got["description"] == info["description"], key
            assert got["budget"] == info["utility_budget"], key
            assert got["lm_budget"] == info["language_model_budget"] == 1, key
            assert got["max_responses_per_call"] == info["max_responses_per_call"] == 2, key
        assert show(capsys, name, "--str", *extra) == info["utility_str"]
        assert info["utility_str"] in show(capsys, name, *extra)
    # The meta-utility's text carries this run's budgets, and so does the guest's utility.budget.
    meta = seen["meta"][0]
    assert meta["budget"] == 3 and "\nMETA_UTILITY_BUDGET = 3\n" in meta["str"]
    assert "\nRUNS = 1\n" in meta["str"] and "\nUTILITY_BUDGET = 4\n" in meta["str"]
    assert seen["maxcut"][0]["budget"] == 4 and "def generate(seed):" in seen["maxcut"][0]["str"]
