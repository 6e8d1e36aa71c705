"""Replay: identical with zero network; a one-character change to the seed improver's prompt
diverges at the first LM request and nothing earlier; changed configs replay and report."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
from replay_helpers import read_run, run_stop

from agents.config import RunConfig
from replay.replayer import ReplayResult, replay_run
from store import SqliteStore
from tasks.meta import SEED_IMPROVER


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
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any attempt of this process to open a network connection fails and is remembered."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("network is unreachable (test)")
        return real_connect(self, address)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_offline_run_replays_identically_with_zero_network(recorded_offline: Path, no_network: list[object]) -> None:
    result = _replay(recorded_offline)
    assert result.identical, result.comparison.first and result.comparison.first.diff()
    assert result.final is not None and result.final.type == "run.finished"
    _run_id, recorded = read_run(recorded_offline)
    assert result.comparison.compared == len([e for e in recorded if not e.type.startswith("work.")])
    assert no_network == []
    # every improver ran again in the sandbox during the replay
    assert sum(e.type == "session.completed" for e in result.events) == sum(
        e.type == "session.completed" for e in recorded
    )


def test_cli_replay_prints_identical(recorded_offline: Path) -> None:
    done = run_stop("replay", "latest", "--store", str(recorded_offline))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("identical: ")


def test_one_character_prompt_change_diverges_at_first_lm_request(recorded_offline: Path, tmp_path: Path) -> None:
    changed = SEED_IMPROVER.replace("Improve the following solution:", "Improve the following solution;")
    assert changed != SEED_IMPROVER and len(changed) == len(SEED_IMPROVER)
    result = _replay(recorded_offline, improver_text=changed)
    assert not result.identical
    first = result.comparison.first
    assert first is not None
    assert first.type == "lm.requested" and first.kind == "new"
    assert "Improve the following solution;" in json.dumps(first.replayed)
    # nothing earlier: every ancestor of the divergence is identical to the recording
    _, recorded = read_run(recorded_offline)
    by_id = {e.id: e for e in recorded}
    replayed = {e.id: e for e in result.events}
    cur = replayed[first.event_id]
    while cur.causation_id:
        cur = replayed[cur.causation_id]
        assert by_id[cur.id].comparable() == cur.comparable()
    # the CLI says the same, with a non-zero exit
    f = tmp_path / "changed.py"
    f.write_text(changed)
    done = run_stop("replay", "latest", "--store", str(recorded_offline), "--improver", str(f))
    assert done.returncode == 1
    assert "DIVERGED at lm.requested" in done.stdout


def test_replay_under_changed_config_reports_where_behaviour_changed(recorded_offline: Path) -> None:
    _, recorded = read_run(recorded_offline)
    config = RunConfig.from_dict({k: v for k, v in recorded[0].payload["config"].items() if k != "options"})
    bigger = config.with_overrides(runs=3)
    result = _replay(recorded_offline, config=bigger)
    first = result.comparison.first
    assert first is not None and first.type == "session.requested" and first.kind == "new"
    assert "/2" in first.causes[-1]  # the third meta-utility run is the new behaviour


def test_re_executed_evaluations_match_for_deterministic_tasks(recorded_offline: Path) -> None:
    result = _replay(recorded_offline, re_execute_evaluations=True)
    assert result.flaky == []
    assert result.identical


def test_tampered_cache_cannot_be_replayed_silently(recorded_offline: Path, tmp_path: Path) -> None:
    """A recording whose LM cache lost an answer fails replay naming the request."""
    import shutil
    import sqlite3

    db = tmp_path / "copy.db"
    shutil.copy(recorded_offline, db)
    for ext in ("-wal", "-shm"):
        if Path(str(recorded_offline) + ext).exists():
            shutil.copy(str(recorded_offline) + ext, str(db) + ext)
    con = sqlite3.connect(db)
    con.execute("DELETE FROM lm_cache WHERE rowid = (SELECT MIN(rowid) FROM lm_cache)")
    con.commit()
    con.close()
    result = _replay(db)
    assert not result.identical
    assert result.final is not None and result.final.type == "run.failed"
    assert "cache miss" in result.final.payload["error"]
