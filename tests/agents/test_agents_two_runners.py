"""Two ``stop agent sandbox-runner`` processes on one store, one of them killed mid-job.

The proposer, evaluator and meta-evaluator run in the test process (``run_agents`` with their
names); the sandbox work is done only by the two runner subprocesses. The improver is slow (one
utility call, then a pause), so the runner that claimed its session can be SIGKILLed while it
runs; the other must notice the dead claimant (same host, process gone: the lease expires at
once) and take the session over as attempt 1.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents_helpers import PROGRAMS, REPO, RunLog, aload_run, clean_env, write_config

from agents.config import load_config
from agents.launch import Agents, run_agents
from events import make_event
from events.types import RunStarted
from lm import backend_from_config
from sandbox import detect_layers
from store import SqliteStore

pytestmark = pytest.mark.anyio

RUN_ID = "improve-two-runners-0"
LEASE_S = 2.0


def _runner(db: Path, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "agent",
                "sandbox-runner",
                "--store",
                str(db),
                "--config",
                str(config),
                "--run",
                RUN_ID,
            ],
            cwd=REPO,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _pid_of(worker: str) -> int:
    return int(worker.split("@", 1)[1].rsplit(":", 2)[1])


async def test_two_runners_share_the_work_and_survive_a_kill(tmp_path: Path) -> None:
    """Every sandbox job (batch and session) ends with exactly one completion; the runner that
    held the improver session was SIGKILLed mid-session and the other runner claimed the next
    attempt and finished it; both runner processes appear as claimants; the run finishes."""
    db = tmp_path / "stop.db"
    cfg_path = write_config(
        tmp_path / "cfg.json",
        {
            "lease_s": LEASE_S,
            "sandbox_workers": 1,
            "session_timeout_s": 60,
            "meta_utility": {"improver": {"responses_per_call": 1, "lm_calls": 1, "utility_calls": 2}},
        },
    )
    config = load_config(cfg_path)
    improver_text = (PROGRAMS / "slow_improver.py").read_text()

    store = await SqliteStore.open(str(db), create=True)
    procs: list[subprocess.Popen[bytes]] = []
    killed: dict[str, Any] = {}
    try:
        improver = await store.put_blob(improver_text)
        backend = backend_from_config({"backend": "offline"}, {})
        root = make_event(
            RUN_ID,
            RunStarted(
                command="improve",
                seed=0,
                config={**config.to_dict(), "options": {"task": "str_grid_dist", "improver": improver}},
                host={
                    "sandbox": detect_layers().to_json(),
                    "lm": backend.describe(),
                    "python": platform.python_version(),
                    "platform": sys.platform,
                },
            ),
            cause=None,
            key=0,
        )
        procs = [_runner(db, cfg_path, tmp_path / f"runner{i}.log") for i in range(2)]
        await store.append([root])

        async def kill_the_session_runner() -> None:
            """Once the improver session is claimed and has had its utility answered (so the
            improver is in its pause), SIGKILL the runner process that holds it."""
            while True:
                await anyio.sleep(0.1)
                sessions = await store.read(RUN_ID, types={"session.requested"})
                if not sessions:
                    continue
                kids = await store.children(sessions[0].id)
                claims = [k for k in kids if k.type == "work.claimed"]
                answered = [
                    u
                    for u in kids
                    if u.type == "utility.requested" and await store.children(u.id, {"utility.evaluated"})
                ]
                if claims and answered:
                    pid = _pid_of(claims[0].payload["worker"])
                    (victim,) = [p for p in procs if p.pid == pid]
                    os.kill(pid, signal.SIGKILL)
                    victim.wait(timeout=10)
                    killed.update(pid=pid, worker=claims[0].payload["worker"])
                    return

        agents = Agents(store, pool=None, backend=backend, lease_s=LEASE_S)
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_the_session_runner)
                final = await run_agents(agents, RUN_ID, names=("proposer", "evaluator", "meta-evaluator"))
                tg.cancel_scope.cancel()
    finally:
        for p in procs:
            _stop(p)
        await store.aclose()

    assert final.type == "run.finished", final.payload
    for i in range(2):
        text = (tmp_path / f"runner{i}.log").read_text()
        assert "serving" in text and "Traceback" not in text, text[-3000:]
    assert killed, "the session runner was never killed"
    log = await aload_run(db, RUN_ID)
    _check(log, killed, runner_pids={p.pid for p in procs})


def _check(log: RunLog, killed: dict[str, Any], runner_pids: set[int]) -> None:
    jobs = log.of("sandbox.batch.requested") + log.of("session.requested")
    assert len(log.of("session.requested")) == 1 and len(log.of("sandbox.batch.requested")) >= 5
    claimants: set[int] = set()
    for job in jobs:
        done_type = "session.completed" if job.type == "session.requested" else "sandbox.batch.completed"
        assert len(log.children(job, done_type)) == 1, job.payload
        claims = log.children(job, "work.claimed")
        assert claims and sorted(c.payload["attempt"] for c in claims) == list(range(len(claims)))
        for c in claims:
            assert c.payload["worker"].startswith("sandbox-runner@")
            claimants.add(_pid_of(c.payload["worker"]))
    assert claimants == runner_pids  # both processes worked, nobody else did

    (session,) = log.of("session.requested")
    claims = sorted(log.children(session, "work.claimed"), key=lambda c: c.payload["attempt"])
    assert claims[0].payload["worker"] == killed["worker"]
    assert len(claims) == 2 and _pid_of(claims[1].payload["worker"]) in runner_pids - {killed["pid"]}
    (done,) = log.children(session, "session.completed")
    assert done.payload["status"] == "ok" and done.payload["utility_calls"] == 1
    # The re-run asked the same utility question under the same identity: answered once, from the log.
    (ureq,) = log.children(session, "utility.requested")
    assert len(log.children(ureq, "utility.evaluated")) == 1
    summary = log.of("run.finished")[0].payload["summary"]
    assert summary["after"] == summary["before"]  # the slow improver returns its input
