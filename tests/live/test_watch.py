"""``stop watch`` follows an offline run appending to a store from another process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import anyio

from agents.progress import RunProgress
from lm.fake_server import IDENTITY, FakeOpenAIServer
from store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]

#: Seconds per reply of the endpoint the watched runs use: with the offline model a quickstart
#: run ends in a few seconds, which a watch starting on a loaded machine could miss whole.
LATENCY_S = 0.3


def _stop(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def slow_run(tmp_path: Path, srv: FakeOpenAIServer, generations: int) -> subprocess.Popen[bytes]:
    """A quickstart run of ``generations`` against ``srv``, started in the background; its store
    is ``tmp_path / "s.db"``."""
    config = tmp_path / "c.json"
    quickstart = json.loads((ROOT / "configs/quickstart.json").read_text())
    lm = {"backend": "openai", "base_url": srv.base_url, "model": "fake-model"}
    config.write_text(json.dumps({**quickstart, "generations": generations, "lm": lm}))
    return subprocess.Popen(
        _stop("self-improve", "--config", str(config), "--store", str(tmp_path / "s.db"), "--no-progress"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OPENAI_API_KEY": "test-key"},
    )


def test_watch_follows_a_live_run_and_exits_with_its_outcome(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with FakeOpenAIServer(IDENTITY, latency=LATENCY_S) as srv:
        run = slow_run(tmp_path, srv, 2)
        try:
            deadline = time.monotonic() + 60
            while not _has_run(db) and time.monotonic() < deadline:
                time.sleep(0.2)
            watch = subprocess.run(
                _stop("watch", "latest", "--store", str(db)), cwd=ROOT, capture_output=True, text=True, timeout=240
            )
            run_rc = run.wait(timeout=240)
        finally:
            run.kill()
            run.wait()
    lines = [ln for ln in watch.stderr.splitlines() if ln.startswith("stop: gen")]
    gens = [int(m.group(1)) for ln in lines if (m := re.match(r"stop: gen (\d+)/2", ln))]
    assert "\x1b" not in watch.stderr, "plain lines only when stderr is not a terminal"
    assert len(set(gens)) >= 2 and gens == sorted(gens), watch.stderr
    assert gens[-1] == 2 and "[finished]" in lines[-1], watch.stderr
    assert watch.returncode == run_rc == 0
    assert "adopted" in watch.stderr or "rejected" in watch.stderr

    async def fold() -> RunProgress:
        store = await SqliteStore.open(db)
        try:
            prog = RunProgress()
            for ev in await store.read((await store.run_ids())[0]):
                prog.add(ev)
            return prog
        finally:
            await store.aclose()

    prog = anyio.run(fold)
    assert prog.status == "finished" and prog.expected["generations"] == 2
    assert len(prog.decisions) == 2 and prog.sessions_done == prog.sessions_requested > 0
    assert prog.lm_calls > 0 and prog.batches_done == prog.batches_requested > 0


def _has_run(db: Path) -> bool:
    """Whether the store holds a run yet (``run.started`` appended, in the file or its WAL)."""
    wal = db.with_name(db.name + "-wal")
    try:
        return any(p.exists() and b"run.started" in p.read_bytes() for p in (db, wal))
    except OSError:
        return False
