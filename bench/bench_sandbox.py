"""Sandbox costs: start-up of bare vs sandboxed interpreters, warm-job overhead, throughput."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import anyio

from bench.harness import Figure, measure
from sandbox import Job, SandboxConfig, SandboxPool, detect_layers
from sandbox._launch import make_launch
from sandbox._pool import effective_layers

TRIVIAL = Job(program="def f():\n    return 1\n", function="f")
CPU_5MS = Job(program="def f():\n    return sum(i * i for i in range(100000))\n", function="f")


def _fresh_sandboxed_argv() -> list[str] | None:
    layers = effective_layers(SandboxConfig(), detect_layers())
    spec = make_launch(layers)
    if spec.host_scratch:
        shutil.rmtree(spec.host_scratch, ignore_errors=True)
    argv = list(spec.argv)
    if not layers.active("bubblewrap"):
        return None
    cut = argv.index("--")
    return [*argv[:cut], "--", sys.executable, "-I", "-c", "pass"]


async def _throughput(job: Job, workers: int, count: int) -> float:
    async with SandboxPool(SandboxConfig(workers=workers)) as pool:
        for _ in range(20):
            await pool.run(job)
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(pool.run, job)
        return count / (time.perf_counter() - start)


async def _warm_job_ms() -> float:
    async with SandboxPool(SandboxConfig(workers=1)) as pool:
        for _ in range(20):
            await pool.run(TRIVIAL)
        samples = []
        for _ in range(200):
            start = time.perf_counter()
            r = await pool.run(TRIVIAL)
            samples.append(time.perf_counter() - start)
            assert r.ok, r
        samples.sort()
        return samples[len(samples) // 2] * 1000


def run() -> list[Figure]:
    figures: list[Figure] = []
    bare = measure(lambda: subprocess.run([sys.executable, "-I", "-c", "pass"], check=True), repeat=15, warmup=2)
    figures.append(Figure("sandbox.bare_python_start_ms", bare * 1000, "ms", note="python -I -c pass"))
    argv = _fresh_sandboxed_argv()
    if argv is not None:
        fresh = measure(lambda: subprocess.run(argv, check=True, env={}), repeat=15, warmup=2)
        figures.append(Figure("sandbox.fresh_sandboxed_start_ms", fresh * 1000, "ms", note="bwrap + python -I -c pass"))
    warm = anyio.run(_warm_job_ms)
    figures.append(
        Figure(
            "sandbox.warm_job_overhead_ms", warm, "ms", "<=", 5.0, note="trivial job round trip, 1 warm worker (median)"
        )
    )
    for workers in (1, 2):
        rate = anyio.run(_throughput, TRIVIAL, workers, 1000)
        target = (">=", 300.0) if workers == 2 else (None, None)
        figures.append(Figure(f"sandbox.trivial_jobs_per_s_{workers}w", rate, "jobs/s", target[0], target[1]))
    for workers in (1, 2):
        rate = anyio.run(_throughput, CPU_5MS, workers, 300)
        figures.append(
            Figure(f"sandbox.cpu5ms_jobs_per_s_{workers}w", rate, "jobs/s", note="sum(i*i for i in range(100000))")
        )
    layers = detect_layers()
    figures.append(
        Figure(
            "sandbox.layers_active", float(sum(1 for x in layers.layers if x.active)), "layers", note=layers.summary()
        )
    )
    return figures
