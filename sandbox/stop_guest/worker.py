"""The warm worker: a pre-started interpreter that forks once per job and supervises the child.

Protocol on fds 0 (from the host) and 1 (to the host), frames as in ``frames``:
  host -> worker: {"op": "init", ...}, then per job {"op": "job", ...} + one binary payload frame,
                  and during a session {"op": "ans", "id": n, "ok": bool, "data"/"error"}.
  worker -> host: {"op": "ready", ...}, {"op": "req", ...} (sessions), {"op": "done", ...}.
The worker holds no secrets: a job can read its memory (it is the job's parent image).
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import json
import os
import select
import shutil
import signal
import sys
import time
from typing import Any

from . import frames
from .batch import BatchWatch
from .child import ChildSpec, run_child
from .confine import Confiner, harden_worker
from .outcome import classify, measured, parse

DRAIN_AFTER_EXIT_S = 0.5
CALL_GRACE_S = 0.25
REQUEST_LIMIT = 4 << 20
PIPE_BYTES = 1 << 20
KINDS = frozenset({"lm.prompt", "lm.batch_prompt", "utility"})


class Worker:
    def __init__(self, ctl_in: int, ctl_out: int, init: dict[str, Any]) -> None:
        self.ctl_in = ctl_in
        self.ctl_out = ctl_out
        self.scratch_root = str(init["scratch_root"])
        os.makedirs(self.scratch_root, exist_ok=True)
        self.devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        self.layers: dict[str, bool] = dict(init.get("layers", {}))
        self.ro_paths = [os.path.realpath(p) for p in init.get("ro_paths", [])]
        self.confiner: Confiner | None = None
        if not init.get("unsafe"):
            bpf = bytes.fromhex(init["seccomp_bpf"]) if init.get("seccomp_bpf") else None
            self.confiner = Confiner(
                landlock=bool(init.get("landlock")),
                seccomp_bpf=bpf,
                capdrop=True,
                ro_paths=self.ro_paths,
                rw_devices=["/dev/null", "/dev/zero", "/dev/urandom"],
            )
        self.counter = 0

    # --- one job ---------------------------------------------------------------------------
    def run_job(self, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
        self.counter += 1
        scratch = os.path.join(self.scratch_root, f"job{self.counter}")
        os.mkdir(scratch, 0o700)
        session = bool(header.get("session"))
        try:
            return self._supervise(header, payload, scratch, session)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _supervise(self, h: dict[str, Any], payload: bytes, scratch: str, session: bool) -> dict[str, Any]:
        ruleset = self.confiner.make_ruleset(scratch) if self.confiner else -1
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        res_r, res_w = os.pipe2(os.O_CLOEXEC)
        ans_r, ans_w = os.pipe2(os.O_CLOEXEC) if session else (-1, -1)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            run_child(
                ChildSpec(
                    h,
                    payload,
                    scratch,
                    out_w,
                    err_w,
                    res_w,
                    ans_r,
                    self.devnull,
                    ruleset,
                    self.confiner,
                    self.layers,
                    self.ro_paths,
                )
            )
        for fd in (out_w, err_w, res_w, ans_r, ruleset):
            if fd >= 0:
                os.close(fd)
        try:
            return self._watch(h, pid, started, out_r, err_r, res_r, ans_w, session)
        finally:
            for fd in (out_r, err_r, res_r, ans_w):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def _watch(
        self, h: dict[str, Any], pid: int, started: float, out_r: int, err_r: int, res_r: int, ans_w: int, session: bool
    ) -> dict[str, Any]:
        return _JobWatch(self, h, pid, started, (out_r, err_r, res_r, ans_w), session).run()

    # --- one batch: one process for many instances of one program ---------------------------
    def run_batch(self, header: dict[str, Any], payload: bytes) -> None:
        """Run every instance of ``header["items"]``, then report ``done``. One child runs them
        in order; when it is stopped (timeout, crash, output flood) the instance it was running
        gets that outcome and the rest continue in a fresh child. The instances' outcomes go to
        the host in ``items`` frames (see ``_ItemQueue``), the last of them in the same write
        as ``done``."""
        n = len(header["items"])
        queue = _ItemQueue(self.ctl_out, header["id"])
        start = 0
        processes = 0
        total_output = 0
        max_rss = 0
        while start < n:
            processes += 1
            self.counter += 1
            scratch = os.path.join(self.scratch_root, f"job{self.counter}")
            os.mkdir(scratch, 0o700)
            try:
                start, out_bytes, rss = self._batch_process(header, payload, scratch, start, queue)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            total_output += out_bytes
            max_rss = max(max_rss, rss)
            if start < n:
                queue.flush()  # a process was stopped: what came before it is final
        done = {
            "op": "done",
            "id": header["id"],
            "processes": processes,
            "output_bytes": total_output,
            "max_rss_kb": max_rss,
        }
        queue.flush(done)

    def _batch_process(
        self, h: dict[str, Any], payload: bytes, scratch: str, start: int, queue: _ItemQueue
    ) -> tuple[int, int, int]:
        """One child from instance ``start``; returns (next instance, output bytes, max RSS)."""
        items: list[dict[str, Any]] = h["items"]
        ch = {**h, "start": start, "cpu_s": sum(float(it["cpu_s"]) for it in items[start:])}
        ruleset = self.confiner.make_ruleset(scratch) if self.confiner else -1
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        res_r, res_w = os.pipe2(os.O_CLOEXEC)
        ack_r, ack_w = os.pipe2(os.O_CLOEXEC)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            run_child(
                ChildSpec(
                    ch,
                    payload,
                    scratch,
                    out_w,
                    err_w,
                    res_w,
                    ack_r,
                    self.devnull,
                    ruleset,
                    self.confiner,
                    self.layers,
                    self.ro_paths,
                )
            )
        for fd in (out_w, err_w, res_w, ack_r, ruleset):
            if fd >= 0:
                os.close(fd)
        try:
            return BatchWatch(ch, pid, started, (out_r, err_r, res_r, ack_w), start, queue.add).run()
        finally:
            for fd in (out_r, err_r, res_r, ack_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _forward_request(self, msg: dict[str, Any], session: bool, violations: list[str]) -> None:
        ok = (
            session
            and isinstance(msg.get("id"), int)
            and msg.get("kind") in KINDS
            and isinstance(msg.get("body"), dict)
        )
        if not ok:
            if "bridge:unexpected-request" not in violations:
                violations.append("bridge:unexpected-request")
            return
        frames.write_json(self.ctl_out, {"op": "req", "id": msg["id"], "kind": msg["kind"], "body": msg["body"]})

    def _forward_answer(self, ans_w: int) -> None:
        raw = frames.read_frame(self.ctl_in, REQUEST_LIMIT * 16)
        if raw is None:
            os._exit(0)  # the host is gone; the job dies with us (pdeathsig / pid namespace)
        msg = json.loads(raw)
        answer = {"id": msg["id"], "ok": bool(msg.get("ok")), "data": msg.get("data"), "error": msg.get("error")}
        try:
            frames.write_json(ans_w, answer)
        except (BrokenPipeError, OSError):
            pass


class _ItemQueue:
    """The instances' outcomes of one batch, sent to the host a few at a time: one ``items``
    frame (a JSON list) per write instead of a frame and a write (and a wake-up of the host)
    per instance. It is flushed when a process of the batch was stopped, when it holds
    ``MAX_ITEMS`` outcomes or ``MAX_BYTES`` of them, and with ``done``. Each outcome is encoded
    when it is added (by ``json.dumps`` of the worker's own dict), so the frame is built by
    joining encoded parts."""

    MAX_ITEMS = 256
    MAX_BYTES = 4 << 20

    def __init__(self, fd: int, batch_id: Any) -> None:
        self.fd = fd
        self.prefix = b'{"op":"items","id":' + json.dumps(batch_id).encode() + b',"items":['
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, item: dict[str, Any]) -> None:
        part = json.dumps(item, separators=(",", ":"), allow_nan=False).encode()
        self.parts.append(part)
        self.size += len(part)
        if len(self.parts) >= self.MAX_ITEMS or self.size >= self.MAX_BYTES:
            self.flush()

    def flush(self, last: dict[str, Any] | None = None) -> None:
        """Send what is held (and ``last``, a frame of its own, in the same write)."""
        out = b""
        if self.parts:
            body = self.prefix + b",".join(self.parts) + b"]}"
            out = frames.HEADER.pack(len(body)) + body
            self.parts, self.size = [], 0
        if last is not None:
            tail = json.dumps(last, separators=(",", ":"), allow_nan=False).encode()
            out += frames.HEADER.pack(len(tail)) + tail
        if out:
            frames.write_all(self.fd, out)


class _JobWatch:
    """The worker's watch over one job's child until it is over: the wall and call deadlines,
    captured output against its caps, the result channel, and (in a session) the host's answers
    passed through. ``run`` kills what is left of the child and returns the ``done`` frame."""

    def __init__(
        self,
        worker: Worker,
        h: dict[str, Any],
        pid: int,
        started: float,
        fds: tuple[int, int, int, int],
        session: bool,
    ) -> None:
        self.worker = worker
        self.h = h
        self.pid = pid
        self.started = started
        self.out_r, self.err_r, self.res_r, self.ans_w = fds
        self.session = session
        self.wall_deadline = started + float(h["wall_timeout_s"])
        self.call_timeout = h.get("call_timeout_s")
        self.call_deadline: float | None = None
        self.output_limit = int(h["output_limit_bytes"])
        self.capture_limit = int(h["capture_limit_bytes"])
        self.result_parser = frames.FrameBuffer(int(h["result_limit_bytes"]) + 4096)
        self.open_pipes = {self.out_r, self.err_r, self.res_r}
        self.captured = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = {"stdout": False, "stderr": False}
        self.total_output = 0
        self.violations: list[str] = []
        self.result: dict[str, Any] | None = None
        self.results = 0
        self.kill_reason: str | None = None
        self.detail: str | None = None
        self.exited_at: float | None = None

    def run(self) -> dict[str, Any]:
        pidfd = os.pidfd_open(self.pid)
        try:
            self._loop(pidfd)
        finally:
            os.close(pidfd)
        return self._reap()

    # --- the loop ----------------------------------------------------------------------------
    def _loop(self, pidfd: int) -> None:
        poller = select.poll()
        names = {self.out_r: "stdout", self.err_r: "stderr", self.res_r: "result", pidfd: "exit"}
        if self.session:
            names[self.worker.ctl_in] = "host"
        for fd in names:
            poller.register(fd, select.POLLIN)
        while True:
            now = time.monotonic()
            if self._over(now):
                return
            for fd, _ in poller.poll(self._wait_ms(now)):
                if not self._on_ready(poller, fd, names[fd]):
                    return

    def _over(self, now: float) -> bool:
        """Whether watching ends now: the child exited and its pipes are drained (or the drain
        time is up), or a deadline passed (``kill_reason`` says which)."""
        if self.exited_at is not None and (not self.open_pipes or now > self.exited_at + DRAIN_AFTER_EXIT_S):
            return True
        if now >= self.wall_deadline:
            self.kill_reason = "timeout"
            return True
        if self.call_deadline is not None and now >= self.call_deadline:
            self.kill_reason = "call_timeout"
            return True
        return False

    def _wait_ms(self, now: float) -> int:
        """How long to poll: until the nearest deadline (the drain's too, once the child exited)."""
        until = self.wall_deadline if self.call_deadline is None else min(self.wall_deadline, self.call_deadline)
        if self.exited_at is not None:
            until = min(until, self.exited_at + DRAIN_AFTER_EXIT_S)
        return max(1, int((until - now) * 1000) + 1)

    def _on_ready(self, poller: select.poll, fd: int, which: str) -> bool:
        """Handle one ready descriptor; False when the child must be stopped now."""
        if which == "exit":
            poller.unregister(fd)
            self.exited_at = time.monotonic()
            return True
        if which == "host":
            self.worker._forward_answer(self.ans_w)
            return True
        chunk = os.read(fd, 65536)
        if not chunk:
            poller.unregister(fd)
            self.open_pipes.discard(fd)
            return True
        if which == "result":
            return self._on_result_chunk(chunk)
        return self._on_output(which, chunk)

    # --- what the child sends ----------------------------------------------------------------
    def _on_result_chunk(self, chunk: bytes) -> bool:
        try:
            msgs = self.result_parser.feed(chunk)
        except ValueError as exc:
            self.kill_reason, self.detail = "invalid_output", f"result channel: {exc}"
            return False
        for raw in msgs:
            msg = parse(raw)
            if msg is not None:
                self._on_message(msg)
        return True

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind == "start" and self.call_deadline is None and self.call_timeout:
            self.call_deadline = time.monotonic() + float(self.call_timeout) * 1.1 + CALL_GRACE_S
        elif kind == "viol" and len(self.violations) < 64:
            self.violations.append(str(msg.get("v"))[:200])
        elif kind == "req":
            self.worker._forward_request(msg, self.session, self.violations)
        elif kind == "result":
            self.results += 1
            self.result = msg if self.result is None else self.result

    def _on_output(self, which: str, chunk: bytes) -> bool:
        """Capture stdout/stderr up to the capture cap; False once the output cap is broken."""
        self.total_output += len(chunk)
        buf = self.captured[which]
        room = self.capture_limit - len(buf)
        if room > 0:
            buf += chunk[:room]
        if len(chunk) > max(room, 0):
            self.truncated[which] = True
        if self.total_output > self.output_limit:
            self.kill_reason = "output_limit"
            return False
        return True

    # --- the end -----------------------------------------------------------------------------
    def _reap(self) -> dict[str, Any]:
        """Kill the whole process group (the child called setsid, so its pgid is its pid), wait
        for it, and build the ``done`` frame."""
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _, status, usage = os.wait4(self.pid, 0)
        wall = time.monotonic() - self.started
        code = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
        if self.results > 1 and self.kill_reason is None:
            # The runtime sends exactly one; a second is a forgery attempt by the program.
            self.kill_reason, self.detail = "invalid_output", "the job sent more than one result"
            self.violations.append("result:forged")
        out: dict[str, Any] = {"op": "done", "id": self.h["id"]}
        out.update(
            measured(
                wall=wall,
                cpu=cpu,
                rss=usage.ru_maxrss,
                code=code,
                captured=self.captured,
                truncated=self.truncated,
                violations=self.violations,
            )
        )
        out.update(classify(self.kill_reason, self.detail, self.result, code, cpu, float(self.h["cpu_s"]), self.h))
        return out


def _widen_pipe(fd: int) -> None:
    """A larger pipe buffer: a batch's payload (often several hundred KB) and its outcomes
    cross in one write instead of one per 64 KB (each a round of the host's event loop)."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (OSError, AttributeError):
        pass  # the system's limit is lower (fs.pipe-max-size) or this is not a pipe


def main() -> None:
    ctl_in = os.dup(0)
    ctl_out = os.dup(1)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    os.set_inheritable(ctl_in, False)
    os.set_inheritable(ctl_out, False)
    for fd in (ctl_in, ctl_out):
        _widen_pipe(fd)
    harden_worker()
    raw = frames.read_frame(ctl_in)
    if raw is None:
        return
    init = json.loads(raw)
    errors: list[str] = []
    for name in init.get("preload", []):
        try:
            importlib.import_module(name)
        except Exception as exc:  # optional modules (numpy) may be missing
            errors.append(f"preload {name}: {exc!r}")
    try:
        worker = Worker(ctl_in, ctl_out, init)
    except Exception as exc:
        frames.write_json(ctl_out, {"op": "failed", "error": repr(exc)})
        return
    # Move every object of the warm image out of the collector's reach: otherwise the first
    # collection in each child touches (and so copies) most of the inherited pages.
    gc.collect()
    gc.freeze()
    frames.write_json(
        ctl_out,
        {
            "op": "ready",
            "pid": os.getpid(),
            "notes": errors,
            "landlock_abi": worker.confiner.abi if worker.confiner else 0,
            "python": sys.version.split()[0],
        },
    )
    while True:
        raw = frames.read_frame(ctl_in)
        if raw is None:
            return
        header = json.loads(raw)
        if header.get("op") == "exit":
            return
        payload = frames.read_frame(ctl_in)
        if payload is None:
            return
        if header.get("op") == "batch":
            worker.run_batch(header, payload)
        else:
            frames.write_json(ctl_out, worker.run_job(header, payload))
