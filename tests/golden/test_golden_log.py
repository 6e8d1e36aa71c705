"""A log recorded by an earlier version of the code (tests/golden/quickstart-v1.jsonl.gz) must
still load with its exact hashes, decode through the typed payloads (upcasting whatever changed
since), audit clean and replay identically. When a payload's shape changes, this test fails until
an upcaster carries the old version forward."""

from __future__ import annotations

from pathlib import Path

import pytest
from golden_log import load, rows

from events.catalogue import load_all
from events.model import verify_chain
from events.registry import current_version
from replay.audit import audit_run
from replay.replayer import replay_run
from replay.store_copy import copy_run
from store import SqliteStore


@pytest.mark.anyio
async def test_golden_log_loads_with_its_hashes_and_decodes(tmp_path: Path) -> None:
    load_all()
    recorded = [r["event"] for r in rows() if "event" in r]
    async with await SqliteStore.open(tmp_path / "golden.db") as store:
        stored = await load(store)
        assert [e.hash for e in stored] == [r["hash"] for r in recorded]
        assert len({e.run_id for e in stored}) == 1
        for ev in stored:
            typed = ev.data  # upcast to the current version, or a ValueError naming the gap
            assert type(typed).TYPE == ev.type
        # The store upcasts on read: an event stored at an older version reads as the newest.
        read = await store.read(stored[0].run_id)
        older = [(e, r) for e, r in zip(read, recorded, strict=True) if r["version"] < current_version(e.type)]
        assert older, "the golden log must hold an event of an older version"
        for ev, row in older:
            assert ev.version == current_version(ev.type) and ev.body()["version"] == row["version"]
            assert ev.body()["payload"] == row["payload"] and ev.payload != row["payload"]
        assert verify_chain(read).ok


@pytest.mark.anyio
async def test_golden_log_audits_and_replays_identically(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "golden.db") as store:
        stored = await load(store)
        run_id = stored[0].run_id
        report = await audit_run(store, run_id)
        assert report.ok, report
        result = await replay_run(store, run_id)
        assert result.identical, result.to_json()
        assert result.comparison.compared > 50


@pytest.mark.anyio
async def test_golden_log_copies_in_its_stored_form(tmp_path: Path) -> None:
    """A copy re-appends each event as stored (not as read, upcast): the destination's chain is
    the source's hash for hash, and it still reads upcast."""
    async with (
        await SqliteStore.open(tmp_path / "src.db") as src,
        await SqliteStore.open(tmp_path / "dst.db") as dst,
    ):
        stored = await load(src)
        run_id = stored[0].run_id
        copied = await copy_run(src, dst, run_id)
        assert copied.ok, copied.problems
        got = await dst.read(run_id)
        assert [e.hash for e in got] == [e.hash for e in stored]
        assert any(e.stored_version < e.version for e in got)
        assert all(e.version == current_version(e.type) for e in got)
