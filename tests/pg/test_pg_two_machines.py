"""Two sandbox runners that look like two machines, sharing one PostgreSQL store.

Each ``stop agent sandbox-runner`` process runs in its own UTS namespace with its own host name
(``machine-a``, ``machine-b``), so neither may use the same-host PID shortcut on the other's
claims: when the runner holding the improver session is SIGKILLed mid-session, the other must
wait until the lease (renewed in the lease table, judged by the database's clock) runs out,
then claim the next attempt and finish the work. Nothing is lost or completed twice.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents_helpers import PROGRAMS, REPO, RunLog, clean_env, write_config
from pgserver import PgServer
from stop_require import require

from agents.config import load_config
from agents.launch import Agents, run_agents
from events import make_event
from events.types import RunStarted
from lm import backend_from_config
from sandbox import detect_layers
from store import PostgresStore

pytestmark = pytest.mark.anyio

RUN_ID = "improve-two-machines-0"
LEASE_S = 3.0
HOSTS = ("machine-a", "machine-b")


def _can_unshare() -> str | None:
    if shutil.which("unshare") is None or shutil.which("hostname") is None:
        return "unshare/hostname missing (util-linux, hostname)"
    probe = subprocess.run(
        ["unshare", "--uts", "sh", "-c", 'hostname probe && [ "$(hostname)" = probe ]'], capture_output=True
    )
    return None if probe.returncode == 0 else f"cannot make a UTS namespace here: {probe.stderr.decode()[-300:]}"


def _runner(url: str, host: str, config: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # unshare and sh exec in place: the Popen pid is the runner's pid (its worker name holds it).
    argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host]
    argv += [sys.executable, "-m", "cli.main", "agent", "sandbox-runner", "--store", url]
    argv += ["--config", str(config), "--run", RUN_ID]
    with log.open("wb") as err:
        return subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _host_pid(worker: str) -> tuple[str, int]:
    host, pid, _ = worker.split("@", 1)[1].rsplit(":", 2)
    return host, int(pid)


async def test_a_machine_dying_costs_only_its_lease(pg_server: PgServer, tmp_path: Path) -> None:
    reason = _can_unshare()
    if reason is not None:
        require("postgres", reason)
    url = await pg_server.fresh_url()
    env = clean_env({"PGPASSWORD": pg_server.env()["PGPASSWORD"]})
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
    store = await PostgresStore.open(url, poll_seconds=0.2)
    procs: list[subprocess.Popen[bytes]] = []
    killed: dict[str, Any] = {}
    try:
        improver = await store.put_blob((PROGRAMS / "slow_improver.py").read_text())
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
        procs = [_runner(url, h, cfg_path, tmp_path / f"{h}.log", env) for h in HOSTS]
        await store.append([root])

        async def kill_the_session_runner() -> None:
            """Once the session is claimed and its utility call answered (the improver is in its
            pause), SIGKILL the runner holding it: that machine dies mid-work."""
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
                    _, pid = _host_pid(claims[0].payload["worker"])
                    (victim,) = [p for p in procs if p.pid == pid]
                    os.kill(pid, signal.SIGKILL)
                    victim.wait(timeout=10)
                    killed.update(pid=pid, worker=claims[0].payload["worker"], at=await store.clock())
                    return

        agents = Agents(store, pool=None, backend=backend, lease_s=LEASE_S)
        with anyio.fail_after(150):
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_the_session_runner)
                final = await run_agents(agents, RUN_ID, names=("proposer", "evaluator", "meta-evaluator"))
                tg.cancel_scope.cancel()
        events = await store.read(RUN_ID)
        (session,) = [e for e in events if e.type == "session.requested"]
        dead_lease_until = await store.lease_expiry(session.id, 0)
        workers = await store.workers()
    finally:
        for p in procs:
            _stop(p)
        await store.aclose()

    assert final.type == "run.finished", final.payload
    for h in HOSTS:
        text = (tmp_path / f"{h}.log").read_text()
        assert "serving" in text and "Traceback" not in text, text[-3000:]
    assert killed, "the session runner was never killed"
    log = RunLog(events)

    # Every sandbox job was completed exactly once, and only the two runners claimed work.
    jobs = log.of("sandbox.batch.requested") + log.of("session.requested")
    assert len(log.of("sandbox.batch.requested")) >= 5
    for job in jobs:
        done = "session.completed" if job.type == "session.requested" else "sandbox.batch.completed"
        assert len(log.children(job, done)) == 1, job.payload
        claims = log.children(job, "work.claimed")
        assert sorted(c.payload["attempt"] for c in claims) == list(range(len(claims)))
        assert {_host_pid(c.payload["worker"])[0] for c in claims} <= set(HOSTS)
    # No renewal events: renewals went to the lease table.
    assert not log.of("work.renewed")

    claims = sorted(log.children(session, "work.claimed"), key=lambda c: c.payload["attempt"])
    assert claims[0].payload["worker"] == killed["worker"]
    assert len(claims) == 2
    survivor_host, survivor_pid = _host_pid(claims[1].payload["worker"])
    assert survivor_pid != killed["pid"] and survivor_host != _host_pid(killed["worker"])[0]
    # The survivor claimed only after the dead machine's lease ran out, by the database's clock
    # (a different host: no PID shortcut), and the lease had been renewed in the table.
    assert dead_lease_until is not None and dead_lease_until > claims[0].payload["expires_at"]
    claimed_at = claims[1].payload["expires_at"] - claims[1].payload["lease_s"]
    assert claimed_at >= dead_lease_until
    (done,) = log.children(session, "session.completed")
    assert done.payload["status"] == "ok" and done.payload["utility_calls"] == 1
    (ureq,) = log.children(session, "utility.requested")
    assert len(log.children(ureq, "utility.evaluated")) == 1
    # The store saw both machines.
    assert {w["host"] for w in workers if w["agent"] == "sandbox-runner"} == set(HOSTS)
