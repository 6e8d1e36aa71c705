"""Fixtures of the sandbox tests: pools in each isolation mode and host-side probes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

import pytest

from sandbox import SandboxConfig, SandboxPool, detect_layers

MODES = ("bwrap", "landlock")


def mode_config(mode: str, workers: int = 2) -> SandboxConfig:
    """``bwrap``: every layer; ``landlock``: the fallback without namespaces."""
    return SandboxConfig(workers=workers, use_bubblewrap=(mode == "bwrap") or False)


def skip_unless(mode: str) -> None:
    if mode == "bwrap" and not detect_layers().active("bubblewrap"):
        pytest.skip("bubblewrap is unusable here (make sandbox-deps installs it)")
    if not detect_layers().active("landlock"):
        pytest.skip("Landlock is unavailable here")


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
    os.environ["OPENAI_API_KEY"] = "sk-test-HOSTSECRET-0123456789"
    async with SandboxPool(mode_config(mode)) as p:
        yield p


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (host pids)."""
    tree = _children()
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


@pytest.fixture
def process_census() -> Callable[[SandboxPool], set[int]]:
    """All processes under the pool's workers (the workers' own trees included)."""

    def census(p: SandboxPool) -> set[int]:
        found: set[int] = set()
        for pid in p.worker_pids():
            found |= {pid} | descendants(pid)
        return found

    return census
