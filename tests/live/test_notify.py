"""``--notify``: the documented JSON on stdin for finish, failure and stall."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import anyio

from agents.notify import run_notifier
from events import make_event
from events.types import RunFailed, RunStarted
from store.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"event", "run_id", "command", "status", "message", "progress"}


def _docs(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_notify_fires_on_stall_then_failure(tmp_path: Path) -> None:
    out = tmp_path / "notes.jsonl"
    cmd = f"cat >> {shlex.quote(str(out))}; echo >> {shlex.quote(str(out))}"

    async def body() -> None:
        store = MemoryStore()
        root = make_event("r1", RunStarted(command="improve", seed=0, config={}, host={}), cause=None, key=0)
        await store.append([root])
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: run_notifier(store, "r1", cmd, stall_s=0.3))
                await anyio.sleep(1.0)  # silence: one stall notice, not one per 0.3 s
                await store.append([make_event("r1", RunFailed(error="boom", detail=""), cause=root, key="failed")])

    anyio.run(body)
    docs = _docs(out)
    assert [d["event"] for d in docs] == ["stalled", "failed"], docs
    assert all(set(d) == KEYS for d in docs)
    assert docs[1]["status"] == "failed" and "boom" in str(docs[1]["message"]) and docs[1]["run_id"] == "r1"


def test_notify_fires_when_a_real_run_finishes(tmp_path: Path) -> None:
    out = tmp_path / "notes.jsonl"
    cmd = f"cat >> {shlex.quote(str(out))}; echo >> {shlex.quote(str(out))}"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "improve",
            "--task",
            "parity_noise",
            "--config",
            "configs/quickstart.json",
            "--store",
            str(tmp_path / "s.db"),
            "--no-progress",
            "--notify",
            cmd,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    finished = [d for d in _docs(out) if d["event"] == "finished"]
    assert len(finished) == 1 and set(finished[0]) == KEYS
    assert finished[0]["status"] == "finished" and finished[0]["command"] == "improve"
