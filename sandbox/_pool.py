"""``SandboxPool``: warm workers for short jobs, a dedicated worker per improver session."""

from __future__ import annotations

import copyreg
import io
import itertools
import math
import pickle
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._config import SandboxConfig
from ._errors import BridgeError, SandboxUnavailable
from ._job import Job, JobResult, LanguageModelProxy, UtilityProxy
from ._launch import make_launch
from ._layers import LayerReport, detect_layers
from ._seccomp import build_bpf
from ._values import canonical_json
from ._worker import WorkerHandle, WorkerLost

__all__ = ("BatchFacts", "RequestHandler", "SandboxPool", "effective_layers")

log = structlog.get_logger("sandbox")

RequestHandler = Callable[[str, dict[str, Any], int], Awaitable[Any]]


def effective_layers(config: SandboxConfig, detected: LayerReport) -> LayerReport:
    """The layers a pool with ``config`` will use, or SandboxUnavailable (fail closed)."""
    report = detected
    if config.use_bubblewrap is False:
        report = report.without("bubblewrap")
    elif config.use_bubblewrap is True and not report.active("bubblewrap"):
        raise SandboxUnavailable("bubblewrap was required but is unusable here: " + report.get("bubblewrap").detail)
    if not config.use_landlock:
        report = report.without("landlock")
    if not config.use_seccomp:
        report = report.without("seccomp")
    if config.unsafe_no_sandbox:
        return replace(
            report.without("bubblewrap", "landlock", "seccomp", "capdrop", reason="--unsafe-no-sandbox"),
            unsafe_no_sandbox=True,
        )
    if not report.isolated:
        raise SandboxUnavailable(
            "refusing to run untrusted code: neither namespaces (bubblewrap) nor Landlock work "
            "here (" + "; ".join(report.missing()) + "). Install bubblewrap or use a kernel "
            "with Landlock; --unsafe-no-sandbox exists for development only."
        )
    return report


class _Pickler(pickle.Pickler):
    """Host -> guest encoding; bridge proxies travel as persistent ids."""

    def __init__(self, file: io.BytesIO, allow_proxies: bool) -> None:
        super().__init__(file, protocol=5)
        self.allow_proxies = allow_proxies
        self.proxies = 0

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, UtilityProxy):
            self.proxies += 1
            return ("stop.utility", {"description": obj.description, "budget": obj.budget, "text": obj.text})
        if isinstance(obj, LanguageModelProxy):
            self.proxies += 1
            return ("stop.language_model", {"budget": obj.budget, "max_responses_per_call": obj.max_responses_per_call})
        return None


class _ProxyInBatch(pickle.PicklingError):
    pass


def _refuse_proxy(obj: Any) -> Any:
    raise _ProxyInBatch("utility/language_model proxies need run_session")


_BATCH_DISPATCH: dict[type, Callable[[Any], Any]] = {
    **copyreg.dispatch_table,
    UtilityProxy: _refuse_proxy,
    LanguageModelProxy: _refuse_proxy,
}


class _BatchPickler(pickle.Pickler):
    """Host -> guest encoding of a batch: no proxies. The refusal goes through the C pickler's
    ``dispatch_table`` (a type lookup per object) rather than a Python ``persistent_id`` call per
    object, which cost more than the rest of a batch's host-side work."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=5)
        self.dispatch_table = _BATCH_DISPATCH


#: Header fields that may differ between the jobs of one batch.
_PER_INSTANCE = ("seed", "call_timeout_s", "wall_timeout_s", "cpu_s")


@dataclass(frozen=True)
class BatchFacts:
    """What was measured for a whole batch: processes used (1 + fresh ones after a stopped
    instance), guest output bytes, whether an instance hit the output cap, the peak RSS of its
    processes, the seconds it spent in its worker (``wall_s``) and waiting for a free worker
    (``queue_s``)."""

    processes: int = 0
    output_bytes: int = 0
    max_rss_kb: int = 0
    output_cap_hit: bool = False
    wall_s: float = 0.0
    queue_s: float = 0.0

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> BatchFacts:
        def num(key: str) -> int:
            x = frame.get(key)
            return x if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else 0

        return cls(processes=num("processes"), output_bytes=num("output_bytes"), max_rss_kb=num("max_rss_kb"))

    def to_json(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "output_bytes": self.output_bytes,
            "output_cap_hit": self.output_cap_hit,
            "max_rss_kb": self.max_rss_kb,
            "wall_s": round(self.wall_s, 6),
            "queue_s": round(self.queue_s, 6),
        }


def _collect(results: list[JobResult | None]) -> Callable[[dict[str, Any]], None]:
    def on_item(frame: dict[str, Any]) -> None:
        i = frame.get("i")
        if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(results) and results[i] is None:
            results[i] = JobResult.from_worker(frame)
            return
        raise WorkerLost(f"the worker reported an unexpected instance {i!r}")

    return on_item


class SandboxPool:
    """Runs untrusted programs. Use as ``async with SandboxPool(config) as pool``.

    ``layers`` injects a LayerReport instead of probing the machine (tests of the refusal).
    """

    def __init__(self, config: SandboxConfig | None = None, *, layers: LayerReport | None = None) -> None:
        self.config = config or SandboxConfig()
        self._injected = layers
        self.layers: LayerReport = layers or LayerReport(layers=())
        self._bpf: bytes | None = None
        self._idle_send: MemoryObjectSendStream[WorkerHandle] | None = None
        self._idle_recv: MemoryObjectReceiveStream[WorkerHandle] | None = None
        self._workers: set[WorkerHandle] = set()
        # Session workers kept for the next session: a worker forks a fresh child per job, so
        # reusing it is as safe as reusing a warm worker, and saves an interpreter start.
        self._idle_sessions: list[WorkerHandle] = []
        self._ids = itertools.count(1)
        self._closed = False
        #: Facts of the most recent batch (tests and benchmarks read them).
        self.last_batch = BatchFacts()
        #: Worker processes started (warm and session workers) and sessions that reused one.
        self.workers_started = 0
        self.session_workers_reused = 0

    # --- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> SandboxPool:
        detected = self._injected if self._injected is not None else await anyio.to_thread.run_sync(detect_layers)
        self.layers = effective_layers(self.config, detected)
        if self.layers.unsafe_no_sandbox:
            log.warning(
                "UNSAFE: sandbox disabled (--unsafe-no-sandbox); untrusted code runs "
                "without namespaces, Landlock or seccomp",
                layers=self.layers.to_json(),
            )
        else:
            log.info("sandbox layers", summary=self.layers.summary())
        if self.layers.active("seccomp"):
            self._bpf = build_bpf()
        n = self.config.worker_count
        self._idle_send, self._idle_recv = anyio.create_memory_object_stream[WorkerHandle](n)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(self._add_worker)
        except BaseException as exc:
            await self._shutdown()
            # Workers start together and fail alike: one line says why, not a group of N.
            if isinstance(exc, BaseExceptionGroup):
                unavailable, rest = exc.split(SandboxUnavailable)
                if unavailable is not None and rest is None:
                    first: BaseException = unavailable
                    while isinstance(first, BaseExceptionGroup):
                        first = first.exceptions[0]
                    raise first from None
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._closed = True
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for worker in [*self._workers, *self._idle_sessions]:
                    tg.start_soon(worker.close)
            self._workers.clear()
            self._idle_sessions.clear()
            for stream in (self._idle_send, self._idle_recv):
                if stream is not None:
                    stream.close()

    async def _start_worker(self) -> WorkerHandle:
        self.workers_started += 1
        spec = make_launch(self.layers, python=self.config.python, seccomp_bpf=self._bpf)
        worker = await WorkerHandle.start(spec, timeout_s=self.config.worker_start_timeout_s)
        self._check_worker(worker)
        return worker

    def _check_worker(self, worker: WorkerHandle) -> None:
        abi = worker.ready.get("landlock_abi", 0)
        if self.layers.active("landlock") and not abi:
            raise SandboxUnavailable("Landlock is unavailable inside the worker")

    async def _add_worker(self) -> None:
        worker = await self._start_worker()
        self._workers.add(worker)
        assert self._idle_send is not None
        self._idle_send.send_nowait(worker)

    async def _session_worker(self) -> WorkerHandle:
        while self._idle_sessions:
            worker = self._idle_sessions.pop()
            if worker.alive and worker.process.returncode is None:
                self.session_workers_reused += 1
                return worker
            await worker.kill()
        return await self._start_worker()

    async def _release_session_worker(self, worker: WorkerHandle, reusable: bool) -> None:
        with anyio.CancelScope(shield=True):
            if (
                reusable
                and not self._closed
                and worker.alive
                and worker.process.returncode is None
                and len(self._idle_sessions) < self.config.idle_session_workers
            ):
                self._idle_sessions.append(worker)
            else:
                await worker.close()

    async def settle(self) -> None:
        """Wait until every warm worker is idle, each with its next job's child forked (a
        worker forks it just after answering a job; tests that count processes call this)."""
        assert self._idle_recv is not None and self._idle_send is not None
        taken: list[WorkerHandle] = []
        try:
            for _ in range(len(self._workers)):
                taken.append(await self._idle_recv.receive())
            for worker in taken:
                await worker.ping()
        finally:
            for worker in taken:
                self._idle_send.send_nowait(worker)

    def worker_pids(self) -> list[int]:
        """Host pids of the worker processes (bwrap's when bubblewrap is active)."""
        return sorted(w.pid for w in self._workers if w.alive)

    # --- jobs ------------------------------------------------------------------------------
    def _prepare(self, job: Job, *, session: bool) -> tuple[dict[str, Any], bytes] | JobResult:
        if self._closed or self._idle_recv is None:
            raise RuntimeError("the SandboxPool is not open")
        refused = self._check_limits(job)
        if refused is not None:
            return refused
        buf = io.BytesIO()
        pickler = _Pickler(buf, allow_proxies=session)
        try:
            pickler.dump((job.program, job.function, list(job.args), dict(job.kwargs)))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            return JobResult(status="refused", error=f"the arguments cannot be sent: {exc}")
        if pickler.proxies and not session:
            return JobResult(status="refused", error="utility/language_model proxies need run_session")
        payload = buf.getvalue()
        if len(payload) > self.config.max_payload_bytes:
            return JobResult(
                status="refused",
                error=f"the job is {len(payload)} bytes, over the {self.config.max_payload_bytes}-byte limit",
            )
        header = {"op": "job", "id": next(self._ids), "session": session, **job.header()}
        return header, payload

    def _check_limits(self, job: Job) -> JobResult | None:
        if not isinstance(job.program, str):
            return JobResult(status="refused", error="the program must be a str")
        for name in ("wall_timeout_s", "call_timeout_s", "cpu_s"):
            value = getattr(job, name)
            if value is not None and not (0 < value <= self.config.max_wall_timeout_s and math.isfinite(value)):
                return JobResult(status="refused", error=f"{name}={value!r} is out of range")
        return None

    def _backstop(self, job: Job) -> float:
        return job.wall_timeout_s + self.config.backstop_grace_s

    async def run(self, job: Job) -> JobResult:
        """Run a short job in a warm worker (waits for a free one)."""
        prepared = self._prepare(job, session=False)
        if isinstance(prepared, JobResult):
            return prepared
        header, payload = prepared
        assert self._idle_recv is not None and self._idle_send is not None
        worker = await self._idle_recv.receive()
        healthy = False
        try:
            frame = await worker.run(header, payload, backstop_s=self._backstop(job))
            healthy = True
            return JobResult.from_worker(frame)
        except WorkerLost as exc:
            return self._lost(worker, exc)
        except TimeoutError:
            return JobResult(status="timeout", error="the worker did not report within the deadline; it was replaced")
        finally:
            with anyio.CancelScope(shield=True):
                await self._release(worker, healthy)

    def _lost(self, worker: WorkerHandle, exc: BaseException) -> JobResult:
        code = worker.process.returncode
        detail = worker.stderr_tail(500)
        log.warning("sandbox worker lost", pid=worker.pid, error=str(exc), returncode=code)
        return JobResult(
            status="crashed",
            error=f"the worker died during the job ({exc}); "
            f"it was replaced" + (f"; stderr: {detail}" if detail else ""),
        )

    async def _release(self, worker: WorkerHandle, healthy: bool) -> None:
        assert self._idle_send is not None
        if healthy and worker.alive and not self._closed:
            self._idle_send.send_nowait(worker)
            return
        self._workers.discard(worker)
        await worker.kill()
        if self._closed:
            return
        try:
            await self._add_worker()
        except SandboxUnavailable as exc:
            log.error("cannot replace a sandbox worker", error=str(exc))
            raise

    # --- batches ---------------------------------------------------------------------------
    def _prepare_batch(self, jobs: Sequence[Job]) -> tuple[dict[str, Any], bytes] | JobResult:
        """One header and payload for jobs that differ only in arguments, seed and time limits."""
        if self._closed or self._idle_recv is None:
            raise RuntimeError("the SandboxPool is not open")
        first = jobs[0]
        headers = [job.header() for job in jobs]
        shared = {k: v for k, v in headers[0].items() if k not in _PER_INSTANCE}
        for job, head in zip(jobs, headers, strict=True):
            if job.program != first.program or job.function != first.function or job.function is None:
                return JobResult(status="refused", error="a batch runs one program's function on every instance")
            if {k: v for k, v in head.items() if k not in _PER_INSTANCE} != shared:
                return JobResult(status="refused", error="the jobs of a batch must share their limits")
            refused = self._check_limits(job)
            if refused is not None:
                return refused
        buf = io.BytesIO()
        try:
            _BatchPickler(buf).dump((first.program, first.function, [(list(j.args), dict(j.kwargs)) for j in jobs]))
        except _ProxyInBatch:
            return JobResult(status="refused", error="utility/language_model proxies need run_session")
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            return JobResult(status="refused", error=f"the arguments cannot be sent: {exc}")
        payload = buf.getvalue()
        if len(payload) > self.config.max_payload_bytes:
            return JobResult(
                status="refused",
                error=f"the batch is {len(payload)} bytes, over the {self.config.max_payload_bytes}-byte limit",
            )
        items = [{k: head[k] for k in _PER_INSTANCE} for head in headers]
        header = {"op": "batch", "id": next(self._ids), "session": False, **shared, "items": items}
        return header, payload

    async def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        """Run the instances of one program in one sandboxed process of a warm worker.

        Each job's result is what ``run(job)`` would report for it: the guest loads the program
        once, then calls the function per instance under that instance's call timer and wall
        limit (the worker enforces both). An instance that hangs, crashes or floods its output
        is stopped with that outcome and the remaining ones continue in a fresh process. The
        guest's RNGs are re-seeded from each job's seed before its call. Program state (module
        globals, files in the scratch directory) persists from one instance to the next, as
        in the reference's in-process loop. ``last_batch`` holds the batch-level facts.
        """
        results, self.last_batch = await self.run_batch_facts(jobs)
        return results

    async def run_batch_facts(self, jobs: Sequence[Job]) -> tuple[list[JobResult], BatchFacts]:
        """``run_batch``, also returning the batch's facts (safe with batches in parallel)."""
        if not jobs:
            return [], BatchFacts()
        prepared = self._prepare_batch(jobs)
        if isinstance(prepared, JobResult):
            return [prepared] * len(jobs), BatchFacts()
        header, payload = prepared
        assert self._idle_recv is not None and self._idle_send is not None
        backstop = sum(j.wall_timeout_s for j in jobs) + self.config.backstop_grace_s
        results: list[JobResult | None] = [None] * len(jobs)
        asked = anyio.current_time()
        worker = await self._idle_recv.receive()
        acquired = anyio.current_time()
        healthy = False
        failure: JobResult | None = None
        facts = BatchFacts()
        try:
            frame = await worker.run_batch(header, payload, backstop_s=backstop, on_item=_collect(results))
            facts = BatchFacts.from_frame(frame)
            healthy = True
        except WorkerLost as exc:
            failure = self._lost(worker, exc)
        except TimeoutError:
            failure = JobResult(
                status="timeout", error="the worker did not report within the deadline; it was replaced"
            )
        finally:
            done = anyio.current_time()
            with anyio.CancelScope(shield=True):
                await self._release(worker, healthy)
        out = [r if r is not None else (failure or JobResult(status="crashed", error="no result")) for r in results]
        facts = replace(
            facts,
            output_cap_hit=any(r.status == "output_limit" for r in out),
            wall_s=done - acquired,
            queue_s=acquired - asked,
        )
        return out, facts

    async def run_session(self, job: Job, on_request: RequestHandler) -> JobResult:
        """Run a long-lived job (an improver) in its own sandboxed worker, outside the warm
        slots, answering its bridge requests with ``on_request(kind, body, occurrence)``.

        ``occurrence`` counts earlier identical (kind, canonical body) requests of this session
        in the order the host received them. A ``BridgeError`` from the handler becomes an
        exception in the guest; any other exception ends the session and propagates.
        """
        prepared = self._prepare(job, session=True)
        if isinstance(prepared, JobResult):
            return prepared
        header, payload = prepared
        worker = await self._session_worker()
        reusable = False
        seen: dict[tuple[str, str], int] = {}
        slots = anyio.Semaphore(self.config.max_inflight_requests)
        try:
            async with anyio.create_task_group() as tg:

                async def answer(msg: dict[str, Any], occurrence: int) -> None:
                    try:
                        data = await on_request(str(msg["kind"]), msg["body"], occurrence)
                        canonical_json(data)  # must be JSON data
                        reply = {"op": "ans", "id": msg["id"], "ok": True, "data": data}
                    except BridgeError as exc:
                        reply = {"op": "ans", "id": msg["id"], "ok": False, "error": str(exc)}
                    finally:
                        slots.release()
                    try:
                        await worker.send_json(reply)
                    except WorkerLost:
                        pass  # the job ended; its result says how

                async def on_frame(msg: dict[str, Any]) -> None:
                    kind, body = msg.get("kind"), msg.get("body")
                    if not isinstance(kind, str) or not isinstance(body, dict):
                        return
                    key = (kind, canonical_json(body))
                    occurrence = seen.get(key, 0)
                    seen[key] = occurrence + 1
                    await slots.acquire()
                    tg.start_soon(answer, msg, occurrence)

                try:
                    frame = await worker.run(header, payload, backstop_s=self._backstop(job), on_request=on_frame)
                    result = JobResult.from_worker(frame)
                    reusable = True
                except WorkerLost as exc:
                    result = self._lost(worker, exc)
                except TimeoutError:
                    result = JobResult(
                        status="timeout", error="the session's worker did not report within the deadline"
                    )
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            await self._release_session_worker(worker, reusable)
        return result
