"""A transfer recorded before ``--runs`` existed still replays identically.

``tests/fixtures/transfer_before_runs.jsonl.gz`` (golden-log format, see ``tests/golden``) was
recorded with main's code just before ``stop transfer --runs``: ``stop transfer --config
configs/quickstart.json --improver seed --tasks str_grid_dist parity_noiseless``. Its run
options hold no ``runs`` key, so its summary must keep the single-run shape it was recorded with.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from events.types import RunFinished
from replay.replayer import ReplayResult, replay_run
from store import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from golden_log import load

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "transfer_before_runs.jsonl.gz"


def test_transfer_recorded_before_runs_replays_identically(tmp_path: Path) -> None:
    db = tmp_path / "before.db"

    async def main() -> ReplayResult:
        async with await SqliteStore.open(db) as store:
            await load(store, FIXTURE)
            run_id = (await store.run_ids())[0]
            return await replay_run(store, run_id)

    result = anyio.run(main)
    assert result.identical, result.comparison.first and result.comparison.first.diff()
    assert result.final is not None and result.final.type == RunFinished.TYPE
    summary = result.final.decode(RunFinished).summary
    assert [row["task"] for row in summary["tasks"]] == ["str_grid_dist", "parity_noiseless"]
    assert "runs" not in summary and all("mean" not in row for row in summary["tasks"])
