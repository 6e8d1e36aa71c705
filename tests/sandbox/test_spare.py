"""A warm worker forks each job's child ahead of the job (its spare): a fresh process per job,
confined before it holds any job data, replaced when it dies, gone with its worker."""

from __future__ import annotations

import os
import signal
import time

import anyio
import pytest
from sandbox_helpers import MODES, descendants, mode_config, skip_unless

from sandbox import Job, SandboxPool

pytestmark = pytest.mark.anyio

PID = Job(program="import os\ndef f():\n    return os.getpid()\n", function="f")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


async def _spares(pool: SandboxPool) -> list[int]:
    """Host pids of the workers' waiting children (a worker interpreter's direct children)."""
    await pool.settle()
    found = []
    for worker in pool.worker_pids():
        tree = {worker} | descendants(worker)
        for pid in tree:
            argv = _argv(pid)
            parent = _parent(pid)
            if argv and not argv[0].endswith(b"bwrap") and parent in tree and not _argv(parent)[0].endswith(b"bwrap"):
                found.append(pid)
    return sorted(found)


def _argv(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return [b""]


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return 0
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


@pytest.mark.parametrize("mode", MODES)
async def test_every_job_gets_a_fresh_process_forked_ahead(mode: str) -> None:
    skip_unless(mode)
    async with SandboxPool(mode_config(mode, workers=1)) as pool:
        first = await _spares(pool)
        assert len(first) == 1, "a started worker has its next job's child waiting"
        pids = [(await pool.run(PID)).value for _ in range(3)]
        assert len(set(pids)) == 3, "each job ran in its own process"
        batch = await pool.run_batch([PID, PID])
        assert batch[0].value == batch[1].value and batch[0].value not in pids
        after = await _spares(pool)
        assert len(after) == 1 and after != first


@pytest.mark.parametrize("mode", MODES)
async def test_a_spare_that_died_waiting_is_replaced(mode: str) -> None:
    skip_unless(mode)
    async with SandboxPool(mode_config(mode, workers=1)) as pool:
        (spare,) = await _spares(pool)
        os.kill(spare, signal.SIGKILL)
        await anyio.sleep(0.1)
        r = await pool.run(PID)
        assert r.status == "ok" and isinstance(r.value, int)
        assert (await pool.run_batch([PID]))[0].status == "ok"
        assert len(await _spares(pool)) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_spares_end_with_their_workers(mode: str) -> None:
    skip_unless(mode)
    async with SandboxPool(mode_config(mode, workers=2)) as pool:
        await pool.run(PID)
        spares = await _spares(pool)
        assert len(spares) == 2
    assert not _alive_after(spares, 5.0)


def _alive_after(pids: list[int], wait_s: float) -> list[int]:
    """Which of ``pids`` still exist after up to ``wait_s`` seconds (at once when none does)."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


@pytest.mark.parametrize("mode", MODES)
async def test_a_large_payload_goes_to_a_child_forked_with_it(mode: str) -> None:
    """Over a pipe's worth of arguments: a child forked holding the job (no copy through the
    spare's pipe); the spare waits on for the next job, and both give the same outcomes."""
    import numpy as np

    skip_unless(mode)
    program = "import os\ndef f(a, k):\n    a[0] += 1\n    return [os.getpid(), float(a.sum()), k]\n"
    big = np.ones(300_000)  # 2.4 MB pickled
    async with SandboxPool(mode_config(mode, workers=1)) as pool:
        (spare,) = await _spares(pool)
        jobs = [Job(program=program, function="f", args=[big.copy(), k]) for k in range(3)]
        results = await pool.run_batch(jobs)
        assert [r.value[1:] for r in results] == [[300_001.0, k] for k in range(3)]
        assert (await _spares(pool)) == [spare], "the spare was not used for it"
        small = await pool.run_batch([Job(program=program, function="f", args=[np.ones(10), 7])])
        assert small[0].value[1:] == [11.0, 7]
        assert (await _spares(pool)) != [spare]
        alone = await pool.run(Job(program=program, function="f", args=[big, 1]))
        assert alone.value[1:] == [300_001.0, 1]
