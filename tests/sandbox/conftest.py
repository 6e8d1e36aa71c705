"""Fixtures of the sandbox tests: pools in each isolation mode and host-side probes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

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
def process_census() -> Callable[[SandboxPool], set[int]]:
    """All processes under the pool's workers (the workers' own trees included)."""

    def census(p: SandboxPool) -> set[int]:
        found: set[int] = set()
        for pid in p.worker_pids():
            found |= {pid} | descendants(pid)
        return found

    return census
