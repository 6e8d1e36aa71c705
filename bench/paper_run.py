"""A paper-scale self-improve generation against a latency-injecting endpoint, read from its log.

``live_generation(latency)`` runs one generation of ``configs/paper.toml`` (the reference's
budgets) against the fake OpenAI-compatible endpoint in its identity mode (every reply is the
program it was shown) answering after ``latency`` seconds, then replays the same run. What is
printed comes from the run's own log:

- ``lm_chain_depth``: the longest chain of causally dependent LM round trips (``critical_chain``);
  times the latency it is the LM-bound critical path, the least wall time any implementation
  could take with that endpoint;
- where the wall time went (``TimeBreakdown``), from the moments the bench saw each event
  appended (a subscription beside the run; the log itself holds no wall-clock times).
"""

from __future__ import annotations

import itertools
import resource
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

import agents.session
import replay.replayer
from agents.config import load_config
from agents.session import RunRequest, start_and_run
from events import Event
from lm.fake_server import IDENTITY, FakeOpenAIServer
from replay.replayer import replay_run
from sandbox import SandboxPool
from store import SqliteStore
from store.causation import ancestors_in

__all__ = ("PaperRun", "TimeBreakdown", "critical_chain", "live_generation", "time_breakdown")

REPO = Path(__file__).resolve().parents[1]
CHAT = "/v1/chat/completions"


def critical_chain(events: Sequence[Event]) -> list[Event]:
    """The ``lm.requested`` events of the longest chain of causally dependent LM round trips.

    Round trip B depends on round trip A when some ancestor S of B's request (walked with
    ``ancestors_in``) is also an ancestor of A's request, and A was answered (``lm.responded``)
    before the event through which B descends from S was appended. The work under S is a
    sequential program (an improver session) or a workflow deciding from the log, so what S
    did after A's answer could have waited for it. Events must carry their ``seq``.
    """
    index = {e.id: e for e in events}
    answered = {e.causation_id: e.seq or 0 for e in events if e.type == "lm.responded"}
    requests = sorted((e for e in events if e.type == "lm.requested" and e.id in answered), key=lambda e: e.seq or 0)
    # For each request: its ancestors, and the ancestor-to-pivot map (the child of each ancestor
    # on the path down to the request).
    paths: dict[str, list[Event]] = {r.id: [r, *ancestors_in(index, r)] for r in requests}
    under: dict[str, list[str]] = {}  # ancestor id -> requests below it, in log order
    for r in requests:
        for a in paths[r.id][1:]:
            under.setdefault(a.id, []).append(r.id)
    depth: dict[str, int] = {}
    parent: dict[str, str | None] = {}
    for r in requests:
        path = paths[r.id]
        best, via = 0, None
        for pivot, ancestor in itertools.pairwise(path):
            for q in under.get(ancestor.id, ()):
                if q in depth and answered[q] < (pivot.seq or 0) and depth[q] > best:
                    best, via = depth[q], q
        depth[r.id], parent[r.id] = best + 1, via
    if not depth:
        return []
    last: str | None = max(depth, key=lambda k: (depth[k], -(index[k].seq or 0)))
    chain = []
    while last is not None:
        chain.append(index[last])
        last = parent[last]
    return chain[::-1]


@dataclass(frozen=True)
class TimeBreakdown:
    """Seconds of the run's wall time by what was in flight (each instant counted once):
    ``lm_only`` LM requests and no batch, ``eval`` at least one batch (with or without LM),
    ``other`` neither (session start-up, scheduling, the store). ``batch_in_worker_s`` sums the
    seconds batches held a worker, ``batch_wait_s`` the seconds they waited for one (both from
    ``sandbox.batch.completed``). Along the critical chain: ``chain_lm_s`` (its round trips)
    and ``chain_gap_s`` (the time between one answer and the next request of the chain)."""

    wall_s: float
    lm_only: float
    eval: float
    other: float
    batch_in_worker_s: float
    batch_wait_s: float
    chain_lm_s: float
    chain_gap_s: float


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _length(intervals: Iterable[tuple[float, float]]) -> float:
    return sum(b - a for a, b in intervals)


def _intersect(xs: list[tuple[float, float]], ys: list[tuple[float, float]]) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(xs) and j < len(ys):
        lo, hi = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        total += max(0.0, hi - lo)
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return total


def time_breakdown(events: Sequence[Event], seen: dict[int, float], chain: Sequence[Event]) -> TimeBreakdown:
    """``seen``: seq -> seconds since the run started, when the bench saw the event appended."""

    def spans(start: str, end: str) -> list[tuple[float, float, Event]]:
        begun = {e.id: seen[e.seq or 0] for e in events if e.type == start and (e.seq or 0) in seen}
        return [
            (begun[e.causation_id], seen[e.seq or 0], e)
            for e in events
            if e.type == end and e.causation_id in begun and (e.seq or 0) in seen
        ]

    lm = _union((a, b) for a, b, _ in spans("lm.requested", "lm.responded"))
    batches = spans("sandbox.batch.requested", "sandbox.batch.completed")
    ev = _union((a, b) for a, b, _ in batches)
    wall = max(seen.values(), default=0.0)
    in_worker = sum(float(e.payload.get("worker_s") or 0.0) for _, _, e in batches)
    wait = sum(float(e.payload.get("queue_s") or 0.0) for _, _, e in batches)
    answered = {e.causation_id: seen.get(e.seq or 0, 0.0) for e in events if e.type == "lm.responded"}
    chain_lm = sum(answered.get(r.id, 0.0) - seen.get(r.seq or 0, 0.0) for r in chain)
    chain_gap = sum(seen.get(nxt.seq or 0, 0.0) - answered.get(prev.id, 0.0) for prev, nxt in itertools.pairwise(chain))
    lm_len, ev_len = _length(lm), _length(ev)
    return TimeBreakdown(
        wall_s=wall,
        lm_only=lm_len - _intersect(lm, ev),
        eval=ev_len,
        other=max(0.0, wall - _length(_union([*lm, *ev]))),
        batch_in_worker_s=in_worker,
        batch_wait_s=wait,
        chain_lm_s=chain_lm,
        chain_gap_s=chain_gap,
    )


@dataclass
class PaperRun:
    latency: float
    wall_s: float
    status: str
    lm_requests: int
    live_calls: int
    chain: list[Event]
    batches: int
    instance_runs: int
    sessions: int
    replay_s: float
    replay_identical: bool
    replay_server_calls: int
    replay_live_answers: int
    breakdown: TimeBreakdown
    #: CPU seconds of the live run in this process (every agent, the store, the LM client)
    host_cpu_s: float
    workers_started: int
    session_workers_reused: int
    replay_workers_started: int
    notes: list[str] = field(default_factory=list)

    @property
    def critical_path_s(self) -> float:
        return len(self.chain) * self.latency


async def _observe(store: SqliteStore, run_id: str, t0: float, seen: dict[int, float]) -> None:
    async for ev in store.subscribe(run_id):
        seen[ev.seq or 0] = time.perf_counter() - t0


class _PoolSpy:
    """Keeps the pools the run and the replay open (their worker counts are read after)."""

    def __init__(self) -> None:
        self.pools: list[SandboxPool] = []
        self._open = agents.session.open_pool

    def __enter__(self) -> _PoolSpy:
        def spy(config: agents.session.RunConfig) -> SandboxPool:
            pool = self._open(config)
            self.pools.append(pool)
            return pool

        agents.session.open_pool = replay.replayer.open_pool = spy
        return self

    def __exit__(self, *exc: object) -> None:
        agents.session.open_pool = replay.replayer.open_pool = self._open


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


async def _run(db: Path, latency: float, generations: int) -> PaperRun:
    with FakeOpenAIServer(IDENTITY, latency=latency) as srv:
        config = load_config(REPO / "configs" / "paper.toml").with_overrides(
            generations=generations, lm={"backend": "openai", "base_url": srv.base_url, "model": "fake-model"}
        )
        store = await SqliteStore.open(db)
        seen: dict[int, float] = {}
        try:
            with _PoolSpy() as live_spy:
                cpu0 = _cpu()
                async with anyio.create_task_group() as tg:
                    t0 = time.perf_counter()

                    async def started(run_id: str) -> None:
                        tg.start_soon(_observe, store, run_id, t0, seen)

                    final = await start_and_run(
                        store,
                        RunRequest("self-improve", 0, config, {"improver": None}),
                        progress=False,
                        on_started=started,
                    )
                    wall = time.perf_counter() - t0
                    await anyio.sleep(0.2)  # the observer catches up with the last appends
                    tg.cancel_scope.cancel()
                cpu1 = _cpu()
            events = await store.read(final.run_id)
            live_calls = srv.count(CHAT)
            with _PoolSpy() as replay_spy:
                start = time.perf_counter()
                replay = await replay_run(store, final.run_id)
                replay_s = time.perf_counter() - start
            replay_server_calls = srv.count(CHAT) - live_calls
        finally:
            await store.aclose()
    chain = critical_chain(events)
    completed = [e for e in events if e.type == "sandbox.batch.completed"]
    return PaperRun(
        latency=latency,
        wall_s=wall,
        status=final.type,
        lm_requests=sum(1 for e in events if e.type == "lm.requested"),
        live_calls=live_calls,
        chain=chain,
        batches=len(completed),
        instance_runs=sum(sum(int(v) for v in e.payload["statuses"].values()) for e in completed),
        sessions=sum(1 for e in events if e.type == "session.requested"),
        replay_s=replay_s,
        replay_identical=replay.identical,
        replay_server_calls=replay_server_calls,
        replay_live_answers=sum(
            1 for e in replay.events if e.type == "lm.responded" and e.payload.get("source") == "live"
        ),
        breakdown=time_breakdown(events, seen, chain),
        host_cpu_s=cpu1 - cpu0,
        workers_started=sum(p.workers_started for p in live_spy.pools),
        session_workers_reused=sum(p.session_workers_reused for p in live_spy.pools),
        replay_workers_started=sum(p.workers_started for p in replay_spy.pools),
    )


def live_generation(latency: float, *, generations: int = 1) -> PaperRun:
    """One paper-scale generation (live, then its replay) in a scratch store."""
    with tempfile.TemporaryDirectory() as tmp:
        return anyio.run(_run, Path(tmp) / "paper.db", latency, generations)
