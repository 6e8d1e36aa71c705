"""The worker's watch over one batch child: per-instance deadlines, output and results.

The child runs instances in order. For each it sends ``start`` (i), flushes the instance's
output, then sends its ``result`` (i) (when the next instance follows at once, in the same write
as that one's ``start``: one wake-up of the worker per instance). Output read up to a result
(the pipe drained when the result arrives) is that instance's. If some of it was still unread
when the result was sent, the result says ``sync`` and the child waits for a byte on the ack
pipe, sent once the worker has drained it, so the next instance's output is never charged to
this one. The worker holds an instance's result as *pending* until the runtime shows the
instance is over (the next ``start``, the ``end`` frame, or the child's exit): a second result
for the same instance while it is pending is a forgery (the program wrote to the result
channel) and fails that instance, as a second result fails a single job.

The worker's pipes from the child are non-blocking: a ready descriptor is read until it is
empty, with no ``select`` probe per read.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from . import frames
from .outcome import classify, measured, parse

DRAIN_AFTER_EXIT_S = 0.5
CALL_GRACE_S = 0.25
READ_SIZE = 1 << 16


def _num(x: Any) -> float:
    """A non-negative finite number the child reported (informational: CPU time, peak RSS)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and 0 <= x < 1e12:
        return float(x)
    return 0.0


def _read(fd: int) -> bytes | None:
    """What a non-blocking pipe holds now (b"" at EOF, None when it is empty)."""
    try:
        return os.read(fd, READ_SIZE)
    except BlockingIOError:
        return None


class BatchWatch:
    """Watches one child from instance ``start``; ``run`` returns (next instance, output, RSS)."""

    def __init__(
        self,
        h: dict[str, Any],
        pid: int,
        started: float,
        fds: tuple[int, int, int, int],
        start: int,
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.h = h
        self.items: list[dict[str, Any]] = h["items"]
        self.pid = pid
        self.out_r, self.err_r, self.res_r, self.ack_w = fds
        self.carry: list[tuple[str, bytes]] = []  # output drained past the cap: the next one's
        self.start = start
        self.emit = emit
        self.output_limit = int(h["output_limit_bytes"])
        self.capture_limit = int(h["capture_limit_bytes"])
        self.parser = frames.FrameBuffer(int(h["result_limit_bytes"]) + 4096)
        self.open_pipes = {self.out_r, self.err_r, self.res_r}
        for fd in self.open_pipes:
            os.set_blocking(fd, False)
        self.current = start  # the first instance whose outcome is not yet emitted
        self.process_output = 0
        self.peak_rss = 0
        self.kill_reason: str | None = None
        self.detail: str | None = None
        self.ended = False
        self.pending: dict[str, Any] | None = None  # the current instance's result, not yet final
        self.call_deadline: float | None = None
        self._reset(started, 0.0)

    def _reset(self, now: float, cpu: float) -> None:
        self.inst_started = now
        self.cpu_before = cpu
        self.captured = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = {"stdout": False, "stderr": False}
        self.inst_output = 0
        self.violations: list[str] = []
        self.call_deadline = None

    def limits(self) -> dict[str, Any]:
        return {**self.h, **self.items[self.current]}

    # --- what the child sends ----------------------------------------------------------------
    def absorb(self, which: str, chunk: bytes) -> bool:
        """Charge output to the current instance; False once it broke the output cap."""
        self.process_output += len(chunk)
        self.inst_output += len(chunk)
        buf = self.captured[which]
        room = self.capture_limit - len(buf)
        if room > 0:
            buf += chunk[:room]
        if len(chunk) > max(room, 0):
            self.truncated[which] = True
        if self.inst_output > self.output_limit:
            self.kill_reason = "output_limit"
            return False
        return True

    def drain(self) -> None:
        """Read the output already written (the child flushes before its result frame). What
        would break the cap is kept for the next instance: this one finished within it."""
        for fd, which in ((self.out_r, "stdout"), (self.err_r, "stderr")):
            while fd in self.open_pipes:
                chunk = _read(fd)
                if chunk is None:
                    break
                if not chunk:
                    self.open_pipes.discard(fd)
                    break
                if self.carry or self.inst_output + len(chunk) > self.output_limit:
                    self.carry.append((which, chunk))
                else:
                    self.absorb(which, chunk)

    def forged(self, what: str = "result:forged") -> None:
        if what not in self.violations:
            self.violations.append(what)
        if what != "bridge:unexpected-request":
            self.pending = None  # a forged result is never emitted
            self.kill_reason, self.detail = "invalid_output", "the job sent more than one result"

    def on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        i = msg.get("i")
        if kind == "viol":
            if len(self.violations) < 64:
                self.violations.append(str(msg.get("v"))[:200])
        elif kind == "end":
            self.ended = True
            self.commit()
        elif kind == "start":
            if self.pending is not None and i == self.current + 1:
                self.commit()
            if i == self.current and self.pending is None and self.call_deadline is None:
                timeout = self.items[self.current].get("call_timeout_s")
                self.call_deadline = time.monotonic() + float(timeout) * 1.1 + CALL_GRACE_S if timeout else None
            else:
                self.forged()
        elif kind == "result":
            if i != self.current or self.pending is not None:
                self.forged()
                return
            if msg.get("sync") is True:
                self.drain()  # the child waits: what is in the pipes now is this instance's
            cpu, rss = _num(msg.get("cpu_s")), int(_num(msg.get("rss_kb")))  # the child's figures
            self.peak_rss = max(self.peak_rss, rss)
            # No kill reason: ``classify`` reads only the result (the limits name a kill's cause).
            outcome = classify(None, None, msg, 0, 0.0, float(self.items[self.current]["cpu_s"]), self.h)
            now = time.monotonic()
            self.pending = self._frame(outcome, code=0, cpu=cpu, rss=self.peak_rss, now=now)
            self._reset(now, cpu)  # what arrives from now on is the next instance's
            carry, self.carry = self.carry, []
            for which, chunk in carry:
                if not self.absorb(which, chunk):
                    break
            if msg.get("sync") is True:
                try:
                    os.write(self.ack_w, b"+")
                except OSError:
                    pass  # the child is gone; its exit says how
        elif kind == "req":
            self.forged("bridge:unexpected-request")

    def _frame(self, outcome: dict[str, Any], *, code: int, cpu: float, rss: int, now: float) -> dict[str, Any]:
        frame: dict[str, Any] = {"i": self.current}
        frame.update(
            measured(
                wall=now - self.inst_started,
                cpu=max(0.0, cpu - self.cpu_before),
                rss=rss,
                code=code,
                captured=self.captured,
                truncated=self.truncated,
                violations=self.violations,
            )
        )
        frame.update(outcome)
        return frame

    def commit(self) -> None:
        """The pending result is final: emit it and move to the next instance."""
        if self.pending is None:
            return
        frame, self.pending = self.pending, None
        self.emit(frame)
        self.current += 1

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> tuple[int, int, int]:
        pidfd = os.pidfd_open(self.pid)
        poller = select.poll()
        names = {self.out_r: "stdout", self.err_r: "stderr", self.res_r: "result", pidfd: "exit"}
        for fd in names:
            poller.register(fd, select.POLLIN)
        exited_at: float | None = None
        try:
            while self.current < len(self.items) and self.kill_reason is None:
                now = time.monotonic()
                if exited_at is not None and (not self.open_pipes or now > exited_at + DRAIN_AFTER_EXIT_S):
                    break
                # While a result is pending, the next instance's clock runs from that result.
                nxt = self.current + 1 if self.pending is not None else self.current
                wall = float(self.items[min(nxt, len(self.items) - 1)]["wall_timeout_s"])
                wall_deadline = self.inst_started + wall
                if now >= wall_deadline:
                    self.commit()
                    self.kill_reason = "timeout"
                    break
                if self.call_deadline is not None and now >= self.call_deadline:
                    self.kill_reason = "call_timeout"
                    break
                until = wall_deadline if self.call_deadline is None else min(wall_deadline, self.call_deadline)
                if exited_at is not None:
                    until = min(until, exited_at + DRAIN_AFTER_EXIT_S)
                for fd, _ in poller.poll(max(1, int((until - now) * 1000) + 1)):
                    which = names[fd]
                    if which == "exit":
                        poller.unregister(fd)
                        exited_at = time.monotonic()
                        continue
                    if fd not in self.open_pipes:
                        poller.unregister(fd)
                        continue
                    # Frames written before output (an earlier result, this instance's start) are
                    # read first, so the output goes to the instance that wrote it.
                    self.pump_results()
                    if which != "result" and self.kill_reason is None and fd in self.open_pipes:
                        chunk = _read(fd)
                        if chunk is not None and not chunk:
                            self.open_pipes.discard(fd)
                        elif chunk:
                            self.absorb(which, chunk)
                    if self.kill_reason is not None:
                        break
        finally:
            os.close(pidfd)
        return self._finish()

    def pump_results(self) -> None:
        """Handle all that is on the result channel now (never blocks: an earlier handler in
        the same poll round may have read what poll reported)."""
        while self.res_r in self.open_pipes and self.kill_reason is None:
            chunk = _read(self.res_r)
            if chunk is None:
                return
            if not chunk:
                self.open_pipes.discard(self.res_r)
                return
            try:
                msgs = self.parser.feed(chunk)
            except ValueError as exc:
                self.kill_reason, self.detail = "invalid_output", f"result channel: {exc}"
                return
            for raw in msgs:
                msg = parse(raw)
                if msg is not None and self.current < len(self.items):
                    self.on_message(msg)
                if self.kill_reason is not None:
                    return

    def _finish(self) -> tuple[int, int, int]:
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _, status, usage = os.wait4(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
        rss = max(usage.ru_maxrss, self.peak_rss)
        self.commit()  # a result that arrived before the child was stopped stands
        progressed = self.current > self.start
        stopped_on_purpose = self.ended and self.kill_reason is None and code == 0 and progressed
        if self.current < len(self.items) and not stopped_on_purpose:
            # The instance the child was on when it stopped: the worker's facts decide. (A child
            # that made no progress is always charged, so a batch always ends.)
            item = self.items[self.current]
            outcome = classify(
                self.kill_reason, self.detail, None, code, cpu - self.cpu_before, float(item["cpu_s"]), self.limits()
            )
            self.emit(self._frame(outcome, code=code, cpu=cpu, rss=rss, now=time.monotonic()))
            self.current += 1
        return self.current, self.process_output, rss
