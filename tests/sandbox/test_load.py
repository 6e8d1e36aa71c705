"""Results stay correct under load, and a worker killed mid-job is replaced."""

from __future__ import annotations

import os
import signal

import anyio
import pytest
from sandbox_helpers import descendants, skip_unless

from sandbox import Job, JobResult, SandboxConfig, SandboxPool

NORMAL = "def f(i):\n    return {'id': i, 'v': i * 7 + 3}\n"
RAISE = "def f(i):\n    raise ValueError(f'job {i} failed')\n"
SEGV = "import ctypes\ndef f(i):\n    ctypes.string_at(0)\n"
CALL_TIMEOUT = "import time\ndef f(i):\n    time.sleep(30)\n"
WALL_TIMEOUT = "def f(i):\n    while True:\n        pass\n"
FLOOD = "import sys\ndef f(i):\n    print(f'job {i}')\n    while True:\n        sys.stdout.write('z' * 4096)\n"


def job_for(i: int) -> tuple[Job, str]:
    kind = ("normal", "raise", "segv", "call_timeout", "wall_timeout", "flood")[
        0 if i % 20 < 13 else (i % 20) - 13 if (i % 20) - 13 < 6 else 0
    ]
    program = {
        "normal": NORMAL,
        "raise": RAISE,
        "segv": SEGV,
        "call_timeout": CALL_TIMEOUT,
        "wall_timeout": WALL_TIMEOUT,
        "flood": FLOOD,
    }[kind]
    wall = 0.3 if kind == "wall_timeout" else 10.0
    return Job(
        program=program,
        function="f",
        args=[i],
        call_timeout_s=0.05 if kind == "call_timeout" else None,
        wall_timeout_s=wall,
        output_limit_bytes=32 << 10,
        capture_limit_bytes=64,
    ), kind


def check(i: int, kind: str, r: JobResult) -> None:
    if kind == "normal":
        assert r.status == "ok" and r.value == {"id": i, "v": i * 7 + 3}, (i, r)
    elif kind == "raise":
        assert r.status == "error" and r.error == f"ValueError: job {i} failed", (i, r)
    elif kind == "segv":
        assert r.status == "crashed" and r.signal == "SIGSEGV", (i, r)
    elif kind == "call_timeout":
        assert r.status == "call_timeout", (i, r)
    elif kind == "wall_timeout":
        assert r.status == "timeout", (i, r)
    elif kind == "flood":
        assert r.status == "output_limit" and r.stdout.startswith(f"job {i}\n"), (i, r)


@pytest.mark.anyio
async def test_2000_mixed_jobs_on_2_workers() -> None:
    """Every job gets exactly one result, matched to it, and the workers keep going."""
    skip_unless("any")
    results: dict[int, list[JobResult]] = {}
    async with SandboxPool(SandboxConfig(workers=2)) as pool:
        workers = pool.worker_pids()

        async def one(i: int) -> None:
            job, _ = job_for(i)
            results.setdefault(i, []).append(await pool.run(job))

        async with anyio.create_task_group() as tg:
            for i in range(2000):
                tg.start_soon(one, i)
        assert pool.worker_pids() == workers
    assert sorted(results) == list(range(2000))
    kinds = set()
    for i, rs in results.items():
        assert len(rs) == 1
        _, kind = job_for(i)
        kinds.add(kind)
        check(i, kind, rs[0])
    assert kinds == {"normal", "raise", "segv", "call_timeout", "wall_timeout", "flood"}


def _inner_worker_python(pid: int) -> int:
    """The worker interpreter itself: the outermost python process in the worker's tree."""
    for candidate in sorted([pid, *descendants(pid)]):
        try:
            with open(f"/proc/{candidate}/cmdline", "rb") as fh:
                if b"stop_guest.worker" in fh.read():
                    return candidate
        except OSError:
            continue
    raise AssertionError("no worker interpreter found")


@pytest.mark.anyio
@pytest.mark.parametrize("target", ["interpreter", "top"])
async def test_worker_killed_mid_job_is_recorded_and_replaced(target: str) -> None:
    skip_unless("any")
    async with SandboxPool(SandboxConfig(workers=1)) as pool:
        (worker,) = pool.worker_pids()
        victim = _inner_worker_python(worker) if target == "interpreter" else worker
        result: list[JobResult] = []

        async def long_job() -> None:
            result.append(
                await pool.run(
                    Job(program="import time\ndef f():\n    time.sleep(20)\n", function="f", wall_timeout_s=30)
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_job)
            await anyio.sleep(0.5)
            os.kill(victim, signal.SIGKILL)
        assert result[0].status == "crashed"
        assert "worker died" in (result[0].error or "")
        assert pool.worker_pids() != [worker]
        after = await pool.run(Job(program="def f():\n    return 'fresh'\n", function="f"))
        assert after.status == "ok" and after.value == "fresh"
        assert not descendants(worker) or not os.path.exists(f"/proc/{worker}")  # noqa: ASYNC240
