"""Agents: where the wall time of one offline self-improvement generation goes, and sandbox job
throughput with one vs two ``stop agent sandbox-runner`` processes on one store.

The split is instrumented, not guessed: the LM backend and the store's appends are wrapped with
timers (summed busy time; agents run concurrently, so shares are of the wall time and need not
add up to 1), and the sandbox time is the summed ``wall_s`` of the run's batch completions (the
solution evaluations) plus its improver sessions' ``wall_s`` (which include waiting for the
session's own LM and utility answers, so they overlap the other two).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from agents.config import RunConfig
from agents.launch import Agents, run_agents
from agents.session import RunRequest, _root, new_run_id, open_pool, resolve_backend
from bench.harness import Figure
from events import Event, make_event, sha256_hex
from events.stop_events import SandboxBatchRequested
from events.types import RunStarted
from lm import LMBackend
from sandbox import detect_layers
from store import SqliteStore
from tasks import get_task

REPO = Path(__file__).resolve().parents[1]

ONE_GENERATION: dict[str, Any] = {
    "generations": 1,
    "meta_utility": {
        "tasks": ["parity_noise"],
        "runs": 1,
        "meta_utility_budget": 2,
        "improver": {"responses_per_call": 2, "lm_calls": 1, "utility_calls": 2},
    },
    "session_timeout_s": 120,
}
BATCHES = 16  # sandbox.batch.requested jobs for the throughput figure (50 instances each)


class _TimedBackend:
    """The backend with its ``complete`` calls timed."""

    def __init__(self, inner: LMBackend) -> None:
        self._inner = inner
        self.name, self.offline, self.default_model = inner.name, inner.offline, inner.default_model
        self.busy_s = 0.0
        self.calls = 0

    async def complete(self, req: Any, *, ordinal: int = 0) -> Any:
        start = time.perf_counter()
        try:
            return await self._inner.complete(req, ordinal=ordinal)
        finally:
            self.busy_s += time.perf_counter() - start
            self.calls += 1

    def describe(self) -> dict[str, Any]:
        return self._inner.describe()


class _TimedStore:
    """The store with its appends timed; everything else passes through."""

    def __init__(self, inner: SqliteStore) -> None:
        self._inner = inner
        self.append_s = 0.0
        self.appends = 0

    async def append(self, events: Any, **kw: Any) -> list[Event]:
        start = time.perf_counter()
        try:
            return await self._inner.append(events, **kw)
        finally:
            self.append_s += time.perf_counter() - start
            self.appends += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def _one_generation(db: Path) -> dict[str, float]:
    config, backend = resolve_backend(RunConfig.from_dict(ONE_GENERATION))
    inner = await SqliteStore.open(str(db), create=True)
    store = _TimedStore(inner)
    timed = _TimedBackend(backend)
    try:
        async with open_pool(config) as pool:
            req = RunRequest("self-improve", 0, config, {"improver": None})
            start = time.perf_counter()
            run_id = await new_run_id(inner, req, lambda rid: _root(rid, req, pool, backend))
            agents = Agents(store, pool=pool, backend=timed, lease_s=config.lease_s)
            final = await run_agents(agents, run_id)
            wall = time.perf_counter() - start
        if final.type != "run.finished":
            raise RuntimeError(f"benchmark run failed: {final.payload}")
        events = await inner.read(run_id)
    finally:
        await inner.aclose()
    batch_s = sum(e.payload["wall_s"] for e in events if e.type == "sandbox.batch.completed")
    session_s = sum(e.payload["wall_s"] for e in events if e.type == "session.completed")
    return {
        "wall": wall,
        "lm": timed.busy_s,
        "lm_calls": timed.calls,
        "store": store.append_s,
        "appends": store.appends,
        "batch": batch_s,
        "session": session_s,
        "events": len(events),
    }


def _runner(db: Path, config: Path, run_id: str, err: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    with err.open("wb") as f:
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
                run_id,
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=f,
        )


async def _jobs_per_s(tmp: Path, runners: int) -> float:
    """Start ``runners`` runner processes (one sandbox worker each), wait until they serve, then
    append ``BATCHES`` batch requests and time until every one has its completion."""
    db = tmp / f"runners{runners}.db"
    config = tmp / "runner.json"
    config.write_text('{"sandbox_workers": 1, "lease_s": 5}')
    run_id = f"bench-runners-{runners}"
    task = get_task("str_grid_dist")
    solution = task.seed_solution.encode("utf-8")
    procs = [_runner(db, config, run_id, tmp / f"runner{runners}-{i}.log") for i in range(runners)]
    store = await SqliteStore.open(str(db), create=True)
    try:
        with anyio.fail_after(60):
            while not all("serving" in (tmp / f"runner{runners}-{i}.log").read_text() for i in range(runners)):
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a sandbox runner exited early")
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
    with tempfile.TemporaryDirectory(prefix="bench_agents_") as d:
        tmp = Path(d)
        g = anyio.run(_one_generation, tmp / "gen.db")
        one = anyio.run(_jobs_per_s, tmp, 1)
        two = anyio.run(_jobs_per_s, tmp, 2)
    wall = g["wall"]
    return [
        Figure(
            "agents.generation_wall_s", wall, "s", note=f"one offline self-improve generation, {g['events']:.0f} events"
        ),
        Figure("agents.lm_s", g["lm"], "s", note=f"{g['lm_calls']:.0f} offline backend calls, summed"),
        Figure("agents.lm_share", g["lm"] / wall, "ratio"),
        Figure("agents.sandbox_batch_s", g["batch"], "s", note="summed wall_s of sandbox.batch.completed"),
        Figure("agents.sandbox_share", g["batch"] / wall, "ratio"),
        Figure("agents.session_s", g["session"], "s", note="summed wall_s of improver sessions (overlaps)"),
        Figure("agents.store_append_s", g["store"], "s", note=f"{g['appends']:.0f} appends, summed"),
        Figure("agents.store_share", g["store"] / wall, "ratio"),
        Figure("agents.jobs_per_s_1_runner", one, "jobs/s", note=f"{BATCHES} batches of 50 str_grid_dist instances"),
        Figure("agents.jobs_per_s_2_runners", two, "jobs/s"),
        Figure("agents.runner_scaling", two / one, "ratio", note="2 runner processes vs 1 (2 cores)"),
    ]


if __name__ == "__main__":
    from bench.harness import format_line

    for fig in run():
        print(format_line(fig))
