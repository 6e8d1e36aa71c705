"""Paper scale: one self-improve generation bound by the model, and evaluation at the
reference's cost.

First, one generation of ``configs/paper.toml`` (the reference's budgets) against the fake
endpoint in identity mode at 2 s and at 0.5 s per reply (``bench.paper_run``): wall time, the
LM-bound critical path from the run's own log, their ratio (target <= 1.5 at 2 s), the LM
requests, sessions, batches and instance runs, where the wall time went, and the replay of the
same run (target >= 10x faster than live, 0 LM calls).

Then each task's seed, in-process (trusted code, bench only) vs the same instances as one
sandboxed batch, measured in the same run.

The in-process side is what the STOP reference pays without a sandbox: the seed program is
exec'd once in this process and called on every instance, then validated and scored. The
sandboxed side is ``SandboxPool.run_batch`` on a warm one-worker pool plus the same fold: one
guest process loads the program and runs the instances in order, each under its own limit.
Targets: sandboxed <= 2x in-process when in-process takes >= 50 ms, else <= 25 ms overhead.

Not in the default ``make bench`` (``make bench-paper``).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import anyio
import structlog

from bench.harness import Figure
from bench.paper_run import PaperRun, live_generation
from sandbox import JobResult, SandboxConfig, SandboxPool
from tasks import Task, all_tasks

__all__ = ("run",)

SPLIT = "test"
REPEAT = 3
#: Endpoint latencies (seconds per reply); the targets are set at the first.
LATENCIES = (2.0, 0.5)


def _in_process(task: Task) -> tuple[float, float]:
    """(seconds, utility) of the reference-style loop: exec once, call, validate, score."""
    instances = task.instances(SPLIT)
    start = time.perf_counter()
    namespace: dict[str, Any] = {}
    exec(compile(task.seed_solution, "<seed>", "exec"), namespace)  # trusted seed, bench only
    fn = namespace[task.function_name]
    scores = []
    for inst in instances:
        t0 = time.perf_counter()
        raw = fn(*[a.copy() if hasattr(a, "copy") else a for a in inst.args])
        took = time.perf_counter() - t0
        ok, value, _ = task.validate(inst, _roundtrip(raw))
        scores.append(float(task.score(inst, value)) if ok and took <= task.time_limit_s else 0.0)
    elapsed = time.perf_counter() - start
    return elapsed, math.fsum(scores) / len(scores)


def _roundtrip(raw: Any) -> Any:
    tolist = getattr(raw, "tolist", None)
    return tolist() if callable(tolist) else raw


async def _sandboxed(tasks: list[Task]) -> dict[str, tuple[float, float, list[JobResult]]]:
    out: dict[str, tuple[float, float, list[JobResult]]] = {}
    async with SandboxPool(SandboxConfig(workers=1)) as pool:
        for task in tasks:
            jobs = task.jobs(task.seed_solution, SPLIT)
            await pool.run_batch(jobs[:2])  # warm the worker for this program's imports
            times = []
            utility = 0.0
            results: list[JobResult] = []
            for _ in range(REPEAT):
                start = time.perf_counter()
                results = await pool.run_batch(jobs)
                utility = task.fold(SPLIT, results).utility
                times.append(time.perf_counter() - start)
            out[task.name] = (statistics.median(times), utility, results)
    return out


def _generation_figures(r: PaperRun, targets: bool) -> list[Figure]:
    name = f"paper.gen_{r.latency * 1000:.0f}ms"
    b = r.breakdown
    ratio = r.wall_s / r.critical_path_s if r.critical_path_s else math.inf
    where = (
        f"wall {b.wall_s:.1f} s = batches in flight {b.eval:.1f} s + LM only {b.lm_only:.1f} s + "
        f"neither {b.other:.1f} s; critical chain: {b.chain_lm_s:.1f} s in its {len(r.chain)} round trips, "
        f"{b.chain_gap_s:.1f} s between an answer and the next request"
    )

    def fig(
        key: str, value: float, unit: str, op: str | None = None, target: float | None = None, note: str = ""
    ) -> Figure:
        return Figure(f"{name}.{key}", value, unit, op if targets else None, target if targets else None, note)

    return [
        fig("wall_s", r.wall_s, "s", note=f"{r.status}; 1 generation of configs/paper.toml, identity model"),
        fig(
            "lm_critical_path_s",
            r.critical_path_s,
            "s",
            note=f"{len(r.chain)} causally chained LM round trips x {r.latency:g} s (from the run's log)",
        ),
        fig("wall_vs_critical_path", ratio, "x", "<=", 1.5, note=where),
        fig("lm_requests", r.lm_requests, "requests", note=f"{r.live_calls} reached the endpoint"),
        fig("sessions", r.sessions, "sessions"),
        fig("batches", r.batches, "batches"),
        fig("instance_runs", r.instance_runs, "runs"),
        fig("time_batches_in_flight_s", b.eval, "s", note="at least one batch requested and not completed"),
        fig("time_lm_only_s", b.lm_only, "s", note="LM requests in flight, no batch"),
        fig("time_neither_s", b.other, "s", note="no LM request, no batch: sessions starting, scheduling, store"),
        fig(
            "batch_in_worker_s",
            b.batch_in_worker_s,
            "s",
            note=f"sum over {r.batches} batches ({b.batch_in_worker_s / max(r.batches, 1) * 1000:.0f} ms each); "
            f"waiting for a worker: {b.batch_wait_s:.1f} s in all",
        ),
        fig("critical_chain_gap_s", b.chain_gap_s, "s", note="non-LM time on the critical chain"),
        fig(
            "host_cpu_s",
            r.host_cpu_s,
            "s",
            note="CPU of the process running every agent (store, workflows, evaluator, LM client)",
        ),
        fig(
            "workers_started",
            r.workers_started,
            "processes",
            note=f"sandbox worker processes started by the live run; {r.session_workers_reused} sessions "
            "reused a finished session's worker",
        ),
        fig(
            "replay_s",
            r.replay_s,
            "s",
            note=("identical" if r.replay_identical else "DIVERGED")
            + f"; {r.replay_workers_started} worker processes started",
        ),
        fig("replay_speedup", r.wall_s / r.replay_s, "x", ">=", 10.0, note=f"live {r.wall_s:.1f} s"),
        fig(
            "replay_lm_calls",
            r.replay_server_calls + r.replay_live_answers,
            "calls",
            "<=",
            0,
            note=f"requests the endpoint received during the replay: {r.replay_server_calls}; "
            f"live answers in the replayed log: {r.replay_live_answers}",
        ),
    ]


def run() -> list[Figure]:
    figures: list[Figure] = []
    with structlog.testing.capture_logs():
        for i, latency in enumerate(LATENCIES):
            figures.extend(_generation_figures(live_generation(latency), targets=i == 0))
    tasks = all_tasks()
    with structlog.testing.capture_logs():
        sandboxed = anyio.run(_sandboxed, tasks)
    for task in tasks:
        local = statistics.median(_in_process(task)[0] for _ in range(REPEAT))
        _, local_utility = _in_process(task)
        boxed, utility, results = sandboxed[task.name]
        n = len(results)
        note = (
            f"{n} instances: in-process {local * 1000:.1f} ms (u={local_utility:.3f}), "
            f"sandboxed batch {boxed * 1000:.1f} ms (u={utility:.3f})"
        )
        figures.append(Figure(f"paper.{task.name}.batch_vs_in_process", boxed / local, "x", note=note))
        if local >= 0.05:
            figures.append(Figure(f"paper.{task.name}.batch_ratio", boxed / local, "x", "<=", 2.0, note=note))
        else:
            overhead_ms = (boxed - local) * 1000
            figures.append(Figure(f"paper.{task.name}.batch_overhead", overhead_ms, "ms", "<=", 25.0, note=note))
    return figures
