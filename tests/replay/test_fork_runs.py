"""Fork: a new run shares the recorded prefix (answers served from the cache) and goes on with
another model after the cut; `stop diff` shows where the two lineages part."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
from replay_helpers import run_stop

from store import SqliteStore


def _copy_store(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    for ext in ("-wal", "-shm"):
        if Path(str(src) + ext).exists():
            shutil.copy(str(src) + ext, str(dst) + ext)
    return dst


def _runs(db: Path) -> dict[str, list]:
    async def main() -> dict[str, list]:
        s = await SqliteStore.open(db, create=False)
        try:
            return {r: await s.read(r) for r in await s.run_ids()}
        finally:
            await s.aclose()

    return anyio.run(main)


def test_fork_shares_prefix_then_uses_new_model(recorded_offline: Path, tmp_path: Path) -> None:
    db = _copy_store(recorded_offline, tmp_path / "fork.db")
    ((source_id, source),) = _runs(db).items()
    requests = [e for e in source if e.type == "lm.requested"]
    assert len(requests) >= 2
    cut = requests[len(requests) // 2 - 1]
    done = run_stop(
        "fork",
        source_id,
        "--at",
        cut.id[:16],
        "--model",
        "another-model",
        "--store",
        str(db),
        "--json",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["forked_from"] == source_id and out["status"] == "finished"
    fork = _runs(db)[out["run_id"]]
    asked = [e.payload["request"]["model"] for e in fork if e.type == "lm.requested"]
    served = [e.payload["source"] for e in fork if e.type == "lm.responded"]
    source_model = requests[0].payload["request"]["model"]
    before_cut = sum(1 for e in requests if (e.seq or 0) <= (cut.seq or 0))
    assert asked.count(source_model) == before_cut  # the prefix is asked exactly as recorded
    assert served.count("cache") >= before_cut  # and answered from the recording
    assert "another-model" in asked  # after the cut the fork goes its own way
    diff = run_stop("diff", source_id, out["run_id"], "--store", str(db))
    assert diff.returncode == 1 and "first divergence" in diff.stdout
