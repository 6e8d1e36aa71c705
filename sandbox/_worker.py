"""Host-side handle of one worker process: start, frame I/O, run one job, kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from ._diagnose import explain_start_failure
from ._errors import SandboxUnavailable
from ._launch import LaunchSpec

__all__ = ("WorkerHandle", "WorkerLost")

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20


class WorkerLost(Exception):
    """The worker died or stopped answering; the handle is unusable."""


class WorkerHandle:
    def __init__(self, process: anyio.abc.Process, spec: LaunchSpec, log: IO[bytes]) -> None:
        self.process = process
        self.spec = spec
        self._log = log
        assert process.stdout is not None and process.stdin is not None
        self._reader = BufferedByteReceiveStream(process.stdout)
        self._writer = process.stdin
        self._write_lock = anyio.Lock()
        self.ready: dict[str, Any] = {}
        self.alive = True
        self.jobs = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(cls, spec: LaunchSpec, *, timeout_s: float) -> WorkerHandle:
        log = tempfile.TemporaryFile()
        try:
            process = await anyio.open_process(
                list(spec.argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=spec.env,
                start_new_session=True,
            )
        except OSError as exc:
            log.close()
            raise SandboxUnavailable(explain_start_failure(spec.python, "", exc)) from exc
        handle = cls(process, spec, log)
        try:
            with anyio.fail_after(timeout_s):
                await handle.send_json(spec.init)
                ready = await handle.recv_json()
        except (TimeoutError, WorkerLost, OSError, anyio.BrokenResourceError) as exc:
            detail = handle.stderr_tail()
            await handle.kill()
            raise SandboxUnavailable(explain_start_failure(spec.python, detail, exc)) from exc
        except BaseException:  # cancelled while starting: leave no process or file behind
            await handle.kill()
            raise
        if ready.get("op") != "ready":
            await handle.kill()
            raise SandboxUnavailable(
                explain_start_failure(spec.python, str(ready.get("error") or ""), None)
                if "landlock" in str(ready.get("error")).lower()
                else f"sandbox worker refused to start: {' '.join(str(ready.get('error')).split())[:300]}"
            )
        handle.ready = ready
        return handle

    def stderr_tail(self, limit: int = 2000) -> str:
        try:
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - limit))
            return self._log.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    async def send_frame(self, data: bytes) -> None:
        async with self._write_lock:
            try:
                await self._writer.send(_HEADER.pack(len(data)) + data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                self.alive = False
                raise WorkerLost(f"cannot write to the worker: {exc!r}") from exc

    async def send_json(self, obj: Any) -> None:
        await self.send_frame(json.dumps(obj, separators=(",", ":"), allow_nan=False).encode())

    async def send_job(self, header: dict[str, Any], payload: bytes) -> None:
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
        async with self._write_lock:
            try:
                # Two writes: no copy of a large payload just to prefix it.
                await self._writer.send(_HEADER.pack(len(head)) + head + _HEADER.pack(len(payload)))
                await self._writer.send(payload)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                self.alive = False
                raise WorkerLost(f"cannot write to the worker: {exc!r}") from exc

    async def recv_json(self) -> dict[str, Any]:
        try:
            (size,) = _HEADER.unpack(await self._reader.receive_exactly(_HEADER.size))
            if size > MAX_FRAME:
                raise WorkerLost(f"worker sent a {size}-byte frame")
            raw = await self._reader.receive_exactly(size)
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            self.alive = False
            raise WorkerLost("the worker closed its pipe (it died)") from exc
        try:
            msg = json.loads(raw)
        except ValueError as exc:
            self.alive = False
            raise WorkerLost("the worker sent a malformed frame") from exc
        if not isinstance(msg, dict):
            self.alive = False
            raise WorkerLost("the worker sent a malformed frame")
        return msg

    async def run(
        self,
        header: dict[str, Any],
        payload: bytes,
        *,
        backstop_s: float,
        on_request: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Send one job and wait for its ``done`` frame (``TimeoutError`` past the backstop)."""
        self.jobs += 1
        with anyio.fail_after(backstop_s):
            await self.send_job(header, payload)
            while True:
                msg = await self.recv_json()
                op = msg.get("op")
                if op == "done":
                    if msg.get("id") != header["id"]:
                        self.alive = False
                        raise WorkerLost("the worker answered for another job")
                    return msg
                if op == "req" and on_request is not None:
                    await on_request(msg)
                    continue
                self.alive = False
                raise WorkerLost(f"unexpected frame from the worker: {op!r}")

    async def run_batch(
        self,
        header: dict[str, Any],
        payload: bytes,
        *,
        backstop_s: float,
        on_item: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Send one batch; ``on_item`` gets each instance's outcome (the worker sends them in
        ``items`` frames, several at a time); returns the ``done`` frame."""
        self.jobs += 1
        with anyio.fail_after(backstop_s):
            await self.send_job(header, payload)
            while True:
                msg = await self.recv_json()
                op = msg.get("op")
                if msg.get("id") != header["id"] and op in ("items", "done"):
                    self.alive = False
                    raise WorkerLost("the worker answered for another job")
                if op == "items":
                    items = msg.get("items")
                    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                        self.alive = False
                        raise WorkerLost("the worker sent a malformed items frame")
                    for item in items:
                        on_item(item)
                    continue
                if op == "done":
                    return msg
                self.alive = False
                raise WorkerLost(f"unexpected frame from the worker: {op!r}")

    async def ping(self, timeout_s: float = 10.0) -> None:
        """Wait until the worker is idle between jobs (its next job's child forked)."""
        with anyio.fail_after(timeout_s):
            await self.send_json({"op": "ping"})
            msg = await self.recv_json()
        if msg.get("op") != "pong":
            self.alive = False
            raise WorkerLost(f"unexpected frame from the worker: {msg.get('op')!r}")

    async def close(self, timeout_s: float = 2.0) -> None:
        """Ask the worker to exit, then make sure it is gone."""
        if self.alive:
            with anyio.move_on_after(timeout_s, shield=True):
                try:
                    await self.send_json({"op": "exit"})
                    await self._writer.aclose()
                    await self.process.wait()
                except (WorkerLost, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
        await self.kill()

    async def kill(self) -> None:
        """Kill the worker's whole session (bwrap and everything in its namespaces)."""
        self.alive = False
        with anyio.CancelScope(shield=True):
            for target in (lambda: os.killpg(self.process.pid, signal.SIGKILL), lambda: self.process.kill()):
                try:
                    target()
                except (ProcessLookupError, PermissionError, OSError):
                    pass
            with anyio.move_on_after(10):
                await self.process.wait()
            try:
                await self.process.aclose()
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            self._log.close()
            if self.spec.host_scratch:
                shutil.rmtree(self.spec.host_scratch, ignore_errors=True)
