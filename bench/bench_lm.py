"""LM layer benchmarks: concurrency against a 50 ms endpoint, and the cache-hit path.

- ``lm_fanout_wall_ratio``: 100 calls through ``LMService`` + ``OpenAICompatibleBackend`` (real
  openai client, real HTTP) against the fake endpoint (in its own process, as a real endpoint
  is) answering after 50 ms, at concurrency 16;
  wall time divided by the ideal 100 / 16 x 50 ms. Target <= 1.3.
- ``lm_cache_hit_rate_memory`` / ``_sqlite``: answers served from the cache per second (the path
  replay takes for every LM call).
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import structlog

from bench.harness import Figure
from lm import LMRequest, LMService, OpenAICompatibleBackend, RetryPolicy
from lm.fake_server import FakeOpenAIServer
from store import MemoryStore, SqliteStore

CALLS = 100
CONCURRENCY = 16
LATENCY = 0.05


def _req(i: int) -> LMRequest:
    return LMRequest(model="fake-model", messages=[{"role": "user", "content": f"task {i}"}], n=1)


async def _fanout_once(base_url: str) -> float:
    backend = OpenAICompatibleBackend(
        base_url=base_url,
        api_key="bench",
        model="fake-model",
        concurrency=CONCURRENCY,
        retry=RetryPolicy(max_attempts=3),
    )
    async with LMService(backend, MemoryStore()) as svc:
        await svc.complete(LMRequest(model="fake-model", messages=[{"role": "user", "content": "warm"}]), 0)
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(CALLS):
                tg.start_soon(svc.complete, _req(i), 0)
        return time.perf_counter() - start


async def _fanout() -> float:
    """The endpoint runs in its own process, as a real one would: measured is the client side."""
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed part
        [sys.executable, "-m", "lm.fake_server", "--latency", str(LATENCY)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        return statistics.median([await _fanout_once(base_url) for _ in range(3)])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]  # stdout=PIPE


async def _cache_hits(store_kind: str) -> float:
    n = 2000
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore() if store_kind == "memory" else await SqliteStore.open(Path(tmp) / "bench.sqlite")
        try:
            with FakeOpenAIServer() as srv:
                backend = OpenAICompatibleBackend(
                    base_url=srv.base_url, api_key="bench", model="fake-model", concurrency=32
                )
                async with LMService(backend, store) as svc:
                    for i in range(200):
                        await svc.complete(_req(i), 0)
                    start = time.perf_counter()
                    for j in range(n):
                        ans = await svc.answer(_req(j % 200), 0)
                        assert ans.source == "cache"
                    return n / (time.perf_counter() - start)
        finally:
            await store.aclose()


def run() -> list[Figure]:
    saved = structlog.get_config()
    # measure the calls, not the console: debug lines per lookup would dominate the cache path
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        wall = anyio.run(_fanout)
        mem = anyio.run(_cache_hits, "memory")
        sql = anyio.run(_cache_hits, "sqlite")
    finally:
        structlog.configure(**saved)
    ideal = CALLS / CONCURRENCY * LATENCY
    return [
        Figure(
            "lm_fanout_wall_ratio",
            wall / ideal,
            "x_ideal",
            "<=",
            1.3,
            note=f"{CALLS} calls, {CONCURRENCY} concurrent, {LATENCY * 1000:.0f} ms: {wall * 1000:.0f} ms vs ideal {ideal * 1000:.0f} ms",
        ),
        Figure("lm_cache_hit_rate_memory", mem, "calls/s", note="LMService.answer served from MemoryStore"),
        Figure("lm_cache_hit_rate_sqlite", sql, "calls/s", note="LMService.answer served from SqliteStore"),
    ]
