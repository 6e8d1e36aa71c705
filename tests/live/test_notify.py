"""Alerts: every kind fires once, with the documented JSON on stdin of a real command.

The command is a small script appending its standard input to a file; the runs are real
(``python -m cli.main``), offline or against the fake OpenAI endpoint on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from stop_require import require

from agents.notify import KINDS, Notify, run_notifier
from events import make_event
from events.types import RunFailed, RunStarted
from lm.fake_server import FakeOpenAIServer, Fault
from sandbox import detect_layers
from store.memory import MemoryStore
from store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = json.loads((ROOT / "configs/quickstart.json").read_text())
KEYS = {"event", "run_id", "command", "status", "message", "at", "detail", "progress"}
SOCKET_IMPROVER = '''\
"""Test fixture: opens a socket (the sandbox refuses and records it), then returns its input."""
import socket


def improve_algorithm(initial_solution, utility, language_model):
    try:
        socket.socket()
    except OSError:
        pass
    return initial_solution
'''


def _alert_cmd(tmp_path: Path) -> tuple[str, Path]:
    """A real command: a script that appends the document on its stdin to a file."""
    script, out = tmp_path / "alert.sh", tmp_path / "alerts.jsonl"
    script.write_text('#!/bin/sh\ncat >> "$1"\n')
    return f"sh {script} {out}", out


def _docs(path: Path) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    for d in docs:
        assert set(d) == KEYS and d["event"] in KINDS, d
        assert {"generation", "sessions", "lm", "caps", "elapsed_s", "errors"} <= set(d["progress"]), d
    return docs


def _config(tmp_path: Path, **extra: Any) -> str:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**QUICKSTART, **extra}))
    return str(path)


def _stop(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def _root_config(db: Path) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        store = await SqliteStore.open(db)
        try:
            first = (await store.read((await store.run_ids())[0], limit=1))[0]
            return dict(first.payload["config"])
        finally:
            await store.aclose()

    return anyio.run(read)


def test_notify_fires_on_stall_once_then_failure(tmp_path: Path) -> None:
    cmd, out = _alert_cmd(tmp_path)

    async def body() -> None:
        store = MemoryStore()
        root = make_event("r1", RunStarted(command="improve", seed=0, config={}, host={}), cause=None, key=0)
        await store.append([root])
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_notifier, store, "r1", Notify(cmd, stall_s=0.3))
                await anyio.sleep(1.2)  # silence: one stall notice, not one per 0.3 s
                await store.append([make_event("r1", RunFailed(error="boom", detail=""), cause=root, key="failed")])

    anyio.run(body)
    docs = _docs(out)
    assert [d["event"] for d in docs] == ["stalled", "failed"], docs
    assert docs[0]["detail"] == {"silent_s": 0.3} and docs[0]["status"] == "running"
    assert docs[1]["status"] == "failed" and "boom" in docs[1]["message"] and docs[1]["run_id"] == "r1"


def test_finished_from_the_configs_notify_table_which_is_not_recorded(tmp_path: Path) -> None:
    cmd, out = _alert_cmd(tmp_path)
    db = tmp_path / "s.db"
    cfg = _config(tmp_path, notify={"command": cmd, "stall_s": 600})
    res = _stop("improve", "--task", "parity_noise", "--config", cfg, "--store", str(db), "--no-progress")
    assert res.returncode == 0, res.stderr[-2000:]
    docs = _docs(out)
    assert [d["event"] for d in docs] == ["finished"], docs
    assert docs[0]["status"] == "finished" and docs[0]["command"] == "improve"
    assert docs[0]["progress"]["sessions"]["done"] == 1 and docs[0]["progress"]["lm"]["calls"] > 0
    assert "notify" not in _root_config(db)  # operational: never in the log


def test_failed_when_the_endpoint_refuses_the_key(tmp_path: Path) -> None:
    cmd, out = _alert_cmd(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_API_KEY"] = "a-wrong-key"
    with FakeOpenAIServer(models=["fake-model"]) as srv:
        srv.inject(*[Fault.unauthorized()] * 20)
        cfg = _config(tmp_path, lm={"backend": "openai", "base_url": srv.base_url, "model": "fake-model"})
        res = _stop(
            "improve",
            "--task",
            "parity_noise",
            "--config",
            cfg,
            "--store",
            str(tmp_path / "s.db"),
            "--no-progress",
            "--notify",
            cmd,
            env=env,
        )
    assert res.returncode == 1, res.stderr[-2000:]
    docs = _docs(out)
    assert [d["event"] for d in docs] == ["failed"], docs
    assert docs[0]["status"] == "failed" and docs[0]["detail"]["errors"], docs
    assert "OPENAI_API_KEY" in json.dumps(docs[0]) and "a-wrong-key" not in out.read_text()


def test_stalled_when_the_endpoint_is_slower_than_stall_s(tmp_path: Path) -> None:
    cmd, out = _alert_cmd(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_API_KEY"] = "test"
    with FakeOpenAIServer(models=["fake-model"], latency=4.0) as srv:
        cfg = _config(tmp_path, lm={"backend": "openai", "base_url": srv.base_url, "model": "fake-model"})
        res = _stop(
            "improve",
            "--task",
            "parity_noise",
            "--config",
            cfg,
            "--store",
            str(tmp_path / "s.db"),
            "--no-progress",
            "--notify",
            cmd,
            "--notify-stall-s",
            "1.5",
            env=env,
        )
    docs = _docs(out)
    kinds = [d["event"] for d in docs]
    assert kinds[0] == "stalled" and docs[0]["detail"] == {"silent_s": 1.5}, kinds
    end = "finished" if res.returncode == 0 else "failed"
    assert kinds[-1] == end and kinds.count(end) == 1, (kinds, res.stderr[-2000:])


def test_spend_80_before_the_cap_stops_the_run(tmp_path: Path) -> None:
    cmd, out = _alert_cmd(tmp_path)
    res = _stop(
        "self-improve",
        "--config",
        "configs/quickstart.json",
        "--store",
        str(tmp_path / "s.db"),
        "--no-progress",
        "--notify",
        cmd,
        "--max-lm-calls",
        "5",
    )
    assert res.returncode == 1, res.stderr[-2000:]
    docs = _docs(out)
    assert [d["event"] for d in docs] == ["spend_80", "budget_exhausted"], docs
    detail = docs[0]["detail"]
    assert detail["cap"] == "max_lm_calls" and detail["limit"] == 5 and 4 <= detail["spent"] <= 5, detail
    assert docs[1]["status"] == "budget_exhausted" and "stop resume" in docs[1]["message"]


def test_violation_when_the_sandbox_records_one(tmp_path: Path) -> None:
    if not detect_layers().active("seccomp"):
        require("sandbox", "seccomp is not active here (stop doctor says why): no socket violation to record")
    cmd, out = _alert_cmd(tmp_path)
    improver = tmp_path / "socket_improver.py"
    improver.write_text(SOCKET_IMPROVER)
    res = _stop(
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
        "--improver",
        str(improver),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    docs = _docs(out)
    assert [d["event"] for d in docs] == ["violation", "finished"], docs
    assert "seccomp:socket" in docs[0]["detail"]["violations"] and "seccomp:socket" in docs[0]["message"]
    assert docs[1]["progress"]["violations"] >= 1


def test_interrupted_by_sigint(tmp_path: Path) -> None:
    cmd, out = _alert_cmd(tmp_path)
    db = tmp_path / "s.db"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "self-improve",
            "--config",
            _config(tmp_path, generations=5),
            "--store",
            str(db),
            "--no-progress",
            "--notify",
            cmd,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and b"session.completed" not in _log_bytes(db):
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=120)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 130, err[-2000:]
    docs = _docs(out)
    assert [d["event"] for d in docs] == ["interrupted"], docs
    assert docs[0]["status"] == "interrupted" and "stop resume" in docs[0]["message"]
    assert docs[0]["progress"]["sessions"]["done"] >= 1


def _log_bytes(db: Path) -> bytes:
    try:
        return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())
    except OSError:
        return b""


@pytest.mark.parametrize("kind", ["hangs", "fails"])
def test_a_hanging_or_failing_command_neither_breaks_nor_holds_the_run(tmp_path: Path, kind: str) -> None:
    pidfile = tmp_path / "pid"
    cmd = f"echo $$ > {pidfile}; exec sleep 120" if kind == "hangs" else "echo nope >&2; exit 3"
    res = _stop(
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
        "--notify-timeout-s",
        "1",
        "--json",
    )
    assert res.returncode == 0 and json.loads(res.stdout)["status"] == "finished", res.stderr[-2000:]
    assert "notify.failed" in res.stderr, res.stderr[-2000:]
    if kind == "hangs":
        assert "timed out after 1 s" in res.stderr
        pid = int(pidfile.read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # its whole process group was killed
    else:
        assert "nope" in res.stderr and "3" in res.stderr
