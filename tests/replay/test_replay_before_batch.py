"""A run recorded before batches existed (one sandbox job per instance) still replays.

``tests/fixtures/quickstart_1gen_before_batch.jsonl.gz`` (the events, blobs and cache rows of a
store, in the golden-log format of ``tests/golden``) was recorded with main's code before the
batch change: ``stop self-improve --config configs/quickstart.json --generations 1``. Its batch
events keep their shape (a batch's blob is still one result per instance); its
``session.completed`` events are version 1, which the store hands out upcast to the current
version. Replaying it, and re-executing its evaluations through batches, must be identical.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from events.model import verify_chain
from events.registry import current_version
from events.stop_events import SandboxBatchCompleted, SessionCompleted, session_error_kind
from replay.replayer import ReplayResult, replay_run
from store import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from golden_log import load, rows

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


def test_old_versions_in_the_fixture_are_read_as_the_newest(recorded: Path) -> None:
    """The fixture holds events of an older version; every read gives the current shape while
    the chain still verifies over what was stored."""
    stored_versions = {r["event"]["id"]: r["event"]["version"] for r in rows(FIXTURE) if "event" in r}

    async def main() -> None:
        async with await SqliteStore.open(recorded, create=False) as s:
            events = await s.read()
            old = [e for e in events if stored_versions[e.id] < current_version(e.type)]
            assert old, "the fixture must hold an event of an older version"
            assert {e.type for e in old} >= {SessionCompleted.TYPE, SandboxBatchCompleted.TYPE}
            for ev in old:
                assert ev.version == current_version(ev.type) and ev.stored_version == stored_versions[ev.id]
                assert ev.body()["version"] == stored_versions[ev.id]
                if ev.type == SessionCompleted.TYPE:
                    done = ev.decode(SessionCompleted)
                    assert done.error_kind == session_error_kind(done.status, done.error) and done.traceback is None
                    assert "error_kind" in ev.payload
                elif ev.type == SandboxBatchCompleted.TYPE:
                    batch = ev.decode(SandboxBatchCompleted)  # v1: no batch facts, read as unknown
                    assert batch.processes is None and batch.worker_s is None and "processes" in ev.payload
            assert verify_chain(events).ok

    anyio.run(main)


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
