"""PostgreSQL store figures beside SQLite's, measured in the same run.

A durable throwaway server (Debian's binaries, ``initdb`` in a temporary directory, fsync and
synchronous commit on, 127.0.0.1) is started for the run and stopped after; the SQLite figures
use ``synchronous=FULL`` so both are durable appends. Then batches/s with 1, 2 and 4
``stop agent sandbox-runner`` processes on one PostgreSQL store: the machine has 2 cores, so
more than two runners cannot scale and the figures say what they measure, nothing more.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from agents.config import RunConfig
from bench.harness import Figure
from events import make_event, sha256_hex
from events.stop_events import SandboxBatchRequested
from events.types import Note, RunStarted
from sandbox import detect_layers
from store import PostgresStore, SqliteStore
from tasks import get_task

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

N_BATCHED = 10_000
BATCH = 500
N_SINGLE = 200
BATCHES = 16


def _events(run_id: str, n: int) -> list:
    root = make_event(run_id, RunStarted("bench", 0, {}, {}), cause=None, key=0)
    return [root] + [make_event(run_id, Note("n", {"k": k, "v": k * 0.5}), cause=root, key=k) for k in range(n - 1)]


async def _open(target: str) -> SqliteStore | PostgresStore:
    if target.startswith("postgresql://"):
        return await PostgresStore.open(target)
    return await SqliteStore.open(target, synchronous="FULL")


async def _batched(target: str) -> float:
    s = await _open(target)
    evs = _events("batched", N_BATCHED)
    start = time.perf_counter()
    for i in range(0, len(evs), BATCH):
        await s.append(evs[i : i + BATCH])
    took = time.perf_counter() - start
    await s.aclose()
    return N_BATCHED / took


async def _single(target: str) -> float:
    s = await _open(target)
    evs = _events("single", N_SINGLE)
    start = time.perf_counter()
    for ev in evs:
        await s.append([ev])
    took = time.perf_counter() - start
    await s.aclose()
    return N_SINGLE / took


def _runner(url: str, config: Path, run_id: str, err: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "cli.main", "agent", "sandbox-runner", "--store", url, "--config", str(config)]
    with err.open("wb") as f:
        return subprocess.Popen(
            [*argv, "--run", run_id], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f
        )


async def _batches_per_s(url: str, tmp: Path, runners: int, env: dict[str, str]) -> float:
    """``runners`` runner processes (one sandbox worker each) serve ``BATCHES`` batch requests."""
    config = tmp / "runner.json"
    config.write_text('{"sandbox_workers": 1, "lease_s": 5}')
    run_id = f"bench-pg-runners-{runners}"
    task = get_task("str_grid_dist")
    solution = task.seed_solution.encode("utf-8")
    logs = [tmp / f"runner{runners}-{i}.log" for i in range(runners)]
    procs = [_runner(url, config, run_id, log, env) for log in logs]
    store = await PostgresStore.open(url)
    try:
        with anyio.fail_after(90):
            while not all("serving" in log.read_text() for log in logs):
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a sandbox runner exited early: " + logs[0].read_text()[-2000:])
                await anyio.sleep(0.05)
        root = make_event(
            run_id,
            RunStarted(
                command="bench",
                seed=0,
                config=RunConfig().to_dict(),
                host={"sandbox": detect_layers().to_json(), "python": platform.python_version()},
            ),
            cause=None,
            key=0,
        )
        batches = [
            make_event(
                run_id,
                SandboxBatchRequested(task=task.name, split="val", solution=sha256_hex(solution), seed=i),
                cause=root,
                key=f"batch/{i}",
            )
            for i in range(BATCHES)
        ]
        start = time.perf_counter()
        await store.append([root, *batches], blobs=[solution])
        with anyio.fail_after(300):
            while len(await store.read(run_id, types={"sandbox.batch.completed"})) < BATCHES:  # noqa: ASYNC110 - runners are other processes
                await anyio.sleep(0.02)
        return BATCHES / (time.perf_counter() - start)
    finally:
        await store.aclose()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def run() -> list[Figure]:
    from pgserver import PASSWORD, start_server

    server = start_server(durable=True)
    old = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = PASSWORD
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_pg_") as d:
            tmp = Path(d)
            fresh = [anyio.run(server.fresh_url) for _ in range(5)]
            pg_batched = anyio.run(_batched, fresh[0])
            lite_batched = anyio.run(_batched, str(tmp / "batched.db"))
            pg_single = anyio.run(_single, fresh[1])
            lite_single = anyio.run(_single, str(tmp / "single.db"))
            scaling = {n: anyio.run(_batches_per_s, fresh[1 + i], tmp, n, env) for i, n in enumerate((1, 2, 4), 1)}
    finally:
        if old is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = old
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
    cores = os.cpu_count() or 1
    return [
        Figure("pg.batched_appends_per_s", pg_batched, "events/s", note=f"batches of {BATCH}, durable server"),
        Figure("pg.sqlite_batched_appends_per_s", lite_batched, "events/s", note="same batches, synchronous=FULL"),
        Figure("pg.durable_single_appends_per_s", pg_single, "appends/s", note="one event per commit"),
        Figure("pg.sqlite_durable_single_appends_per_s", lite_single, "appends/s", note="synchronous=FULL"),
        Figure("pg.runner_batches_per_s_1", scaling[1], "batches/s", note="1 runner process"),
        Figure("pg.runner_batches_per_s_2", scaling[2], "batches/s", note="2 runner processes"),
        Figure(
            "pg.runner_batches_per_s_4",
            scaling[4],
            "batches/s",
            note=f"4 runner processes on {cores} cores (no headroom beyond {cores})",
        ),
        Figure("pg.runner_scaling_4_vs_1", scaling[4] / scaling[1], "ratio"),
    ]
