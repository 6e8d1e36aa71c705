"""A run recorded before batches existed (one sandbox job per instance) still replays.

``tests/fixtures/quickstart_1gen_before_batch.jsonl.gz`` (the events, blobs and cache rows of a
store, in the golden-log format of ``tests/golden``) was recorded with main's code before the
batch change: ``stop self-improve --config configs/quickstart.json --generations 1``. Its events
keep their shape (a batch's blob is still one result per instance), so no upcaster is needed;
replaying it, and re-executing its evaluations through batches, must be identical.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from replay.replayer import ReplayResult, replay_run
from store import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from golden_log import load

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "quickstart_1gen_before_batch.jsonl.gz"


def _replay(db: Path, **kw: Any) -> ReplayResult:
    async def main() -> ReplayResult:
        s = await SqliteStore.open(db, create=False)
        try:
            run_id = (await s.run_ids())[0]
            return await replay_run(s, run_id, **kw)
        finally:
            await s.aclose()

    return anyio.run(main)


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    db = tmp_path / "before.db"

    async def main() -> None:
        async with await SqliteStore.open(db) as store:
            await load(store, FIXTURE)

    anyio.run(main)
    return db


def test_pre_batch_recording_replays_identically(recorded: Path) -> None:
    result = _replay(recorded)
    assert result.identical, result.comparison.first and result.comparison.first.diff()
    assert result.final is not None and result.final.type == "run.finished"
    assert result.comparison.compared > 100


def test_pre_batch_evaluations_re_executed_as_batches_match(recorded: Path) -> None:
    result = _replay(recorded, re_execute_evaluations=True)
    assert result.flaky == []
    assert result.identical, result.comparison.first and result.comparison.first.diff()
    assert sum(e.type == "sandbox.batch.completed" for e in result.events) > 10
