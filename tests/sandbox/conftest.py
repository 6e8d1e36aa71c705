"""Fixtures of the sandbox tests: pools in each isolation mode and host-side probes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sandbox_helpers import MODES, descendants, mode_config, skip_unless

from sandbox import SandboxPool


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    skip_unless(request.param)
    return str(request.param)


@pytest.fixture(scope="module")
async def pool(mode: str, anyio_backend: str) -> AsyncIterator[SandboxPool]:
    # A fake key in the host environment: no job may ever see it.
    old = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = "sk-test-HOSTSECRET-0123456789"
    try:
        async with SandboxPool(mode_config(mode)) as p:
            yield p
    finally:
        if old is None:
            del os.environ["OPENAI_API_KEY"]
        else:
            os.environ["OPENAI_API_KEY"] = old


@pytest.fixture
def process_census() -> Callable[[SandboxPool], Awaitable[set[object]]]:
    """All processes under the pool's workers (the workers' own trees included).

    A worker keeps one child forked ahead of its next job (its *spare*, a new pid after every
    job, forked just after the worker answers: ``settle`` waits for it): a worker interpreter's
    direct children count as
    ``("child", worker, k)``, so the census is the same across a job exactly when the job left
    no process behind (a job's process that survived would be a second child, or a process
    further down)."""

    async def census(p: SandboxPool) -> set[object]:
        await p.settle()
        return _census_once(p)

    return census


def _census_once(p: SandboxPool) -> set[object]:
    found: set[int] = set()
    for pid in p.worker_pids():
        found |= {pid} | descendants(pid)
    interpreters = {pid for pid in found if _is_worker(pid) and not _is_worker(_parent(pid))}
    out: set[object] = set()
    children: dict[int, int] = {}
    for pid in found:
        parent = _parent(pid)
        if parent in interpreters:
            children[parent] = children.get(parent, 0) + 1
        else:
            out.add(pid)
    out |= {("child", parent, k) for parent, n in children.items() for k in range(n)}
    return out


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return 0
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def _is_worker(pid: int) -> bool:
    """A worker interpreter or a child forked from one (bubblewrap's own processes, whose
    command line holds the worker's, are not)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return False
    return not os.path.basename(argv[0]).startswith(b"bwrap") and b"stop_guest.worker" in b" ".join(argv)
