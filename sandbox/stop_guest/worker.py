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
from dataclasses import dataclass
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
        self.spare: _Child | None = None

    # --- children ------------------------------------------------------------------------
    def _fork(self, job: tuple[dict[str, Any], bytes] | None = None) -> _Child:
        """Fork a child: it confines itself, then waits for its job on fd 4 (or runs ``job``,
        which it got with the worker's memory)."""
        self.counter += 1
        scratch = os.path.join(self.scratch_root, f"job{self.counter}")
        os.mkdir(scratch, 0o700)
        ruleset = -1
        ends: list[int] = []
        try:
            ruleset = self.confiner.make_ruleset(scratch) if self.confiner else -1
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            ends += (out_r, out_w)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            ends += (err_r, err_w)
            res_r, res_w = os.pipe2(os.O_CLOEXEC)
            ends += (res_r, res_w)
            job_r, job_w = os.pipe2(os.O_CLOEXEC)
            ends += (job_r, job_w)
            _widen_pipe(job_w)  # a batch's payload crosses in a few writes
            pid = os.fork()
        except BaseException:
            for fd in (*ends, ruleset):
                if fd >= 0:
                    os.close(fd)
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        if pid == 0:  # the child: never returns
            run_child(
                ChildSpec(
                    scratch,
                    out_w,
                    err_w,
                    res_w,
                    job_r,
                    self.devnull,
                    ruleset,
                    self.confiner,
                    self.layers,
                    self.ro_paths,
                    job,
                )
            )
        for fd in (out_w, err_w, res_w, job_r, ruleset):
            if fd >= 0:
                os.close(fd)
        return _Child(pid, scratch, out_r, err_r, res_r, job_w)

    def _take(self) -> _Child:
        """The spare child if it is still waiting, else a new one."""
        spare, self.spare = self.spare, None
        if spare is not None:
            if os.waitpid(spare.pid, os.WNOHANG) == (0, 0):
                return spare
            spare.release()  # it died waiting (it was reaped just now)
        return self._fork()

    def prepare_spare(self) -> None:
        """Fork the next job's child now, while the worker waits for that job (warm workers:
        after each job, once its ``done`` frame is sent)."""
        if self.spare is None:
            self.spare = self._fork()

    def drop_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.kill()
            spare.release()

    def _start(self, header: dict[str, Any], payload: bytes) -> tuple[_Child, float]:
        """A child running the job, and when the job started (its wall clock's zero): the spare,
        given the job through its pipe, or for a payload over ``PIPE_BYTES`` a child forked now
        (it shares the payload's pages instead of two copies through a pipe)."""
        if len(payload) > PIPE_BYTES:
            started = time.monotonic()
            return self._fork((header, payload)), started
        child = self._take()
        started = time.monotonic()
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
        try:
            frames.write_all(child.job_w, frames.HEADER.pack(len(head)) + head + frames.HEADER.pack(len(payload)))
            frames.write_all(child.job_w, payload)
        except OSError:
            pass  # the child died before its job: the watch reports how (it sees the exit)
        return child, started

    # --- one job ---------------------------------------------------------------------------
    def run_job(self, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
        session = bool(header.get("session"))
        child, started = self._start(header, payload)
        try:
            fds = (child.out_r, child.err_r, child.res_r, child.job_w if session else -1)
            return _JobWatch(self, header, child.pid, started, fds, session).run()
        finally:
            child.release()

    # --- one batch: one process for many instances of one program ---------------------------
    def run_batch(self, header: dict[str, Any], payload: bytes) -> bytes:
        """Run every instance of ``header["items"]``; returns the last write to the host (the
        last ``items`` frame and ``done``). One child runs them in order; when it is stopped
        (timeout, crash, output flood) the instance it was running gets that outcome and the
        rest continue in a fresh child. The instances' outcomes go to the host in ``items``
        frames (see ``_ItemQueue``)."""
        n = len(header["items"])
        queue = _ItemQueue(self.ctl_out, header["id"])
        start = 0
        processes = 0
        total_output = 0
        max_rss = 0
        while start < n:
            processes += 1
            start, out_bytes, rss = self._batch_process(header, payload, start, queue)
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
        return queue.close(done)

    def _batch_process(self, h: dict[str, Any], payload: bytes, start: int, queue: _ItemQueue) -> tuple[int, int, int]:
        """One child from instance ``start``; returns (next instance, output bytes, max RSS)."""
        items: list[dict[str, Any]] = h["items"]
        ch = {**h, "start": start, "cpu_s": sum(float(it["cpu_s"]) for it in items[start:])}
        child, started = self._start(ch, payload)
        try:
            fds = (child.out_r, child.err_r, child.res_r, child.job_w)
            return BatchWatch(ch, child.pid, started, fds, start, queue.add).run()
        finally:
            child.release()

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


@dataclass
class _Child:
    """A forked child and the worker's ends of its pipes (``job_w``: its job, then acks or
    answers), with its scratch directory."""

    pid: int
    scratch: str
    out_r: int
    err_r: int
    res_r: int
    job_w: int

    def kill(self) -> None:
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass  # reaped already

    def release(self) -> None:
        """Close the worker's ends and remove the scratch directory (the child is reaped)."""
        for fd in (self.out_r, self.err_r, self.res_r, self.job_w):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.scratch, ignore_errors=True)


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

    def flush(self) -> None:
        """Send what is held."""
        if self.parts:
            frames.write_all(self.fd, self.close())

    def close(self, last: dict[str, Any] | None = None) -> bytes:
        """What is held (and ``last``, a frame of its own) as the bytes of one write."""
        out = b""
        if self.parts:
            body = self.prefix + b",".join(self.parts) + b"]}"
            out = frames.HEADER.pack(len(body)) + body
            self.parts, self.size = [], 0
        if last is not None:
            out += _frame_bytes(last)
        return out


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
    worker.prepare_spare()  # before ready: a started worker always has its next child waiting
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
    try:
        _serve(worker, ctl_in, ctl_out)
    finally:
        worker.drop_spare()


def _serve(worker: Worker, ctl_in: int, ctl_out: int) -> None:
    while True:
        job = _next_job(ctl_in, ctl_out)
        if job is None:
            return
        header, payload = job
        del job
        warm = not header.get("session")  # session workers (one long job each) keep no spare
        if header.get("op") == "batch":
            out = worker.run_batch(header, payload)
        else:
            out = _frame_bytes(worker.run_job(header, payload))
        del header, payload
        frames.write_all(ctl_out, out)
        del out
        if warm:
            # The next job's child, forked once this job's data is released (the spare, the
            # next job's process, never holds it) and its answer is out (off its critical path).
            worker.prepare_spare()


def _next_job(ctl_in: int, ctl_out: int) -> tuple[dict[str, Any], bytes] | None:
    """The next job's header and payload (None: exit). A ``ping`` is answered with ``pong``
    here, so the answer says the previous job's spare was forked (tests count processes)."""
    while True:
        raw = frames.read_frame(ctl_in)
        if raw is None:
            return None
        header = json.loads(raw)
        if header.get("op") == "exit":
            return None
        if header.get("op") == "ping":
            frames.write_json(ctl_out, {"op": "pong"})
            continue
        payload = frames.read_frame(ctl_in)
        return None if payload is None else (header, payload)


def _frame_bytes(obj: Any) -> bytes:
    data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    return frames.HEADER.pack(len(data)) + data
