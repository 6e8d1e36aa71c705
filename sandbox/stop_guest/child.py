"""What a forked child does: confine itself, run the job's program, report one result frame.

The worker forks a child before its job is known (a *spare*, see ``worker``): the child confines
itself first, then reads its job (a header frame and a payload frame) from fd 4, sets the job's
rlimits and runs it. So fork and confinement are off a job's critical path, and a child holds
no job data before it is confined. The child never returns into the worker loop: every path
ends in ``os._exit``.
"""

from __future__ import annotations

import array
import builtins
import fcntl
import linecache
import os
import pickle
import random
import resource
import signal
import sys
import tempfile
import termios
import threading
import time
import traceback
import types
from dataclasses import dataclass
from typing import Any

from . import bridge, encode, frames
from .confine import Confiner

RESULT_FD = 3
ACK_FD = 4  # the job itself, then in sessions bridge answers, in batches "output drained" bytes
JOB_LIMIT = 1 << 30
MAX_ERROR = 2000
MAX_TRACEBACK = 8000
MAX_VIOLATIONS = 32
EXIT_RUNTIME_FAILURE = 70
_ENV_KEEP = frozenset(
    {
        "PATH",
        "LANG",
        "MALLOC_ARENA_MAX",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "PYTHONDONTWRITEBYTECODE",
        "TMPDIR",
        "HOME",
    }
)


@dataclass
class ChildSpec:
    scratch: str
    out_w: int
    err_w: int
    res_w: int
    job_r: int
    devnull: int
    ruleset_fd: int
    confiner: Confiner | None
    layers: dict[str, bool]
    ro_paths: list[str]
    #: The job when the child was forked holding it (a large payload), else read from fd 4.
    job: tuple[dict[str, Any], bytes] | None = None


class CallTimeout(BaseException):
    """Raised by the per-call timer; a BaseException so ordinary ``except Exception`` blocks in
    the program do not swallow it (the worker's backstop kills the child if one does)."""


class _Reporter:
    """Serialises every write to the result pipe (the bridge and audit hook use it too).

    ``hold`` keeps a frame back to go out in the same write as the next one (a batch
    instance's result with the next instance's ``start``: one write, one wake-up of the worker)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: set[str] = set()
        self.held = b""

    @staticmethod
    def _frame(obj: dict[str, Any]) -> bytes:
        data = encode.json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        return frames.HEADER.pack(len(data)) + data

    def send(self, obj: dict[str, Any]) -> None:
        data = self._frame(obj)
        with self.lock:
            data, self.held = self.held + data, b""
            frames.write_all(RESULT_FD, data)

    def hold(self, obj: dict[str, Any]) -> None:
        data = self._frame(obj)
        with self.lock:
            self.held += data

    def violation(self, what: str) -> None:
        if what in self.seen or len(self.seen) >= MAX_VIOLATIONS:
            return
        self.seen.add(what)
        try:
            self.send({"t": "viol", "v": what[:200]})
        except OSError:
            pass


def _setup_fds(spec: ChildSpec) -> int:
    """Put the pipes on fixed numbers 0-4 and close everything else except the ruleset."""
    wanted = [spec.devnull, spec.out_w, spec.err_w, spec.res_w, spec.job_r, spec.ruleset_fd]
    high = [os.dup(fd) if fd >= 0 else -1 for fd in wanted]  # dup first: no clobbering
    for target, fd in enumerate(high[:5]):
        if fd >= 0:
            os.dup2(fd, target, inheritable=True)
    ruleset = -1
    if high[5] >= 0:
        ruleset = 5
        os.dup2(high[5], 5, inheritable=False)
    os.closerange(6 if ruleset == 5 else 5, 1 << 20)
    if high[4] < 0:
        try:
            os.close(4)
        except OSError:
            pass
    return ruleset


def _make_audit_hook(reporter: _Reporter, scratch: str, layers: dict[str, bool], ro_paths: list[str]) -> Any:
    seccomp = "seccomp" if layers.get("seccomp") else "unconfined"
    landlock = "landlock" if layers.get("landlock") else "unconfined"
    me = os.getpid()
    busy = threading.local()
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def outside(path: Any, *, reading: bool) -> str | None:
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if not isinstance(path, str):
            return None
        full = os.path.normpath(os.path.join(scratch, path))
        if full == scratch or full.startswith(scratch + os.sep):
            return None
        if reading and (full == "/dev/null" or any(full == p or full.startswith(p + os.sep) for p in ro_paths)):
            return None
        return full

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if getattr(busy, "on", False):
            return
        busy.on = True
        try:
            if event == "socket.__new__":
                reporter.violation(f"{seccomp}:socket")
            elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn"):
                reporter.violation(f"{seccomp}:exec")
            elif event in ("os.fork", "os.forkpty"):
                reporter.violation(f"{seccomp}:fork")
            elif event == "ctypes.dlsym" and len(args) > 1:
                reporter.violation(f"ctypes:dlsym:{args[1]}")
            elif event in ("os.kill", "os.killpg") and args and args[0] not in (me, 0):
                reporter.violation(f"{landlock}:signal")
            elif event == "open" and args:
                flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
                mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
                writing = bool(flags & write_flags) or any(c in mode for c in "wax+")
                where = outside(args[0], reading=not writing)
                if where is not None:
                    kind = "write" if writing else "read"
                    reporter.violation(f"{landlock}:{kind}:{where}")
            elif event in ("os.listdir", "os.scandir") and args:
                where = outside(args[0], reading=True)
                if where is not None:
                    reporter.violation(f"{landlock}:read:{where}")
        except Exception:
            pass
        finally:
            busy.on = False

    return hook


def _describe(exc: BaseException) -> tuple[str, str]:
    try:
        message = f"{type(exc).__qualname__}: {exc}"
    except BaseException:
        message = f"{type(exc).__qualname__}: <unprintable>"
    try:
        tb = "".join(traceback.format_exception(exc))
    except BaseException:
        tb = ""
    if len(tb) > MAX_TRACEBACK:
        tb = "...\n" + tb[-MAX_TRACEBACK:]
    return message[:MAX_ERROR], tb


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: Any, channel: bridge.Channel | None) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self.channel = channel

    def persistent_load(self, pid: Any) -> Any:
        kind, params = pid
        if self.channel is None:
            raise pickle.UnpicklingError("bridge proxies are only available in sessions")
        if kind == "stop.utility":
            return bridge.Utility(
                self.channel, str(params["description"]), int(params["budget"]), str(params.get("text", ""))
            )
        if kind == "stop.language_model":
            return bridge.LanguageModel(self.channel, int(params["budget"]), int(params["max_responses_per_call"]))
        raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")


def _seed(seed: int) -> None:
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed % (1 << 32))


def run_child(spec: ChildSpec) -> None:
    code = EXIT_RUNTIME_FAILURE
    try:
        code = _run(spec)
    finally:
        os._exit(code)


def _run(spec: ChildSpec) -> int:
    os.setsid()
    ruleset = _setup_fds(spec)
    os.chdir(spec.scratch)
    # The worker's environment was built from nothing by the host; only the paths change.
    for key in [k for k in os.environ if k not in _ENV_KEEP]:
        del os.environ[key]
    os.environ["TMPDIR"] = spec.scratch
    os.environ["HOME"] = spec.scratch
    tempfile.tempdir = spec.scratch
    reporter = _Reporter()
    try:
        c = spec.confiner
        if c is not None:
            c.die_with_parent()
            c.drop_caps()
            c.no_new_privs()
            c.restrict(ruleset)
            if ruleset >= 0:
                os.close(ruleset)
            c.load_seccomp()
    except BaseException as exc:
        # Fail closed: a job whose confinement failed never runs.
        reporter.send({"t": "result", "status": "refused", "error": f"confinement failed: {_describe(exc)[0]}"})
        return EXIT_RUNTIME_FAILURE
    sys.addaudithook(_make_audit_hook(reporter, spec.scratch, spec.layers, spec.ro_paths))
    job = spec.job
    if job is None:
        _warm_up()
        job = _receive()
    if job is None:
        return 0  # the worker is gone (or dropped this spare) before giving it a job
    h, payload = job
    try:
        Confiner.set_rlimits(
            cpu_s=float(h["cpu_s"]),
            memory_mb=int(h["memory_mb"]),
            file_size_mb=int(h["file_size_mb"]),
            open_files=int(h["open_files"]),
        )
    except BaseException as exc:
        reporter.send({"t": "result", "status": "refused", "error": f"confinement failed: {_describe(exc)[0]}"})
        return EXIT_RUNTIME_FAILURE
    if h.get("op") == "batch":
        _execute_batch(h, payload, reporter)
        result: dict[str, Any] = {"t": "end"}
    else:
        channel = bridge.Channel(reporter.lock) if h.get("session") else None
        result = _execute(h, payload, channel, reporter)
    _flush()
    try:
        reporter.send(result)
    except (OSError, ValueError):
        return EXIT_RUNTIME_FAILURE
    return 0


def _receive() -> tuple[dict[str, Any], bytes] | None:
    """The job from the worker (fd 4): its header (JSON) and payload (the host's pickle)."""
    raw = frames.read_frame(ACK_FD, JOB_LIMIT)
    payload = frames.read_frame(ACK_FD, JOB_LIMIT) if raw is not None else None
    if raw is None or payload is None:
        return None
    header = encode.json.loads(raw)
    return header, payload


def _warm_up() -> None:
    """Run the runtime's own per-call steps once while the child waits for its job, so the
    copy-on-write faults of their first use (a few hundred pages) are not charged to it."""
    try:
        encode.dumps([1, 2.5, "x", None, (1,), {"k": [True]}], 1 << 10)
        _Reporter._frame({"t": "result", "i": 0, "status": "ok", "value_json": "1", "call_time_s": 0.0})
        time.perf_counter()
        resource.getrusage(resource.RUSAGE_SELF)
        _unread(1)
        signal.setitimer(signal.ITIMER_REAL, 0)
        compile("def f():\n    return 1\n", "<warm-up>", "exec")
    except Exception:
        pass


def _execute(h: dict[str, Any], payload: bytes, channel: bridge.Channel | None, reporter: _Reporter) -> dict[str, Any]:
    try:
        program, function, args, kwargs = _Unpickler(payload, channel).load()
    except BaseException as exc:
        return {"t": "result", "status": "refused", "error": _describe(exc)[0]}
    _seed(int(h["seed"]))
    name = "__main__" if function is None else "__candidate__"
    module = types.ModuleType(name)
    module.__dict__["__builtins__"] = builtins
    module.__file__ = "<candidate>"
    sys.modules[name] = module
    linecache.cache["<candidate>"] = (len(program), None, program.splitlines(True), "<candidate>")
    fn: Any
    try:
        code = compile(program, "<candidate>", "exec")
        if function is None:

            def fn() -> None:  # the program itself is the timed call
                exec(code, module.__dict__)

            args, kwargs = (), {}
        else:
            exec(code, module.__dict__)
            fn = module.__dict__.get(function)
            if not callable(fn):
                raise NameError(f"the program defines no function {function!r}")
    except BaseException as exc:
        message, tb = _describe(exc)
        return {
            "t": "result",
            "status": "error",
            "error": message,
            "traceback": tb,
            "memory": isinstance(exc, MemoryError),
            "call_time_s": None,
        }
    return _call(fn, args, kwargs, h.get("call_timeout_s"), int(h["result_limit_bytes"]), reporter, None)


def _execute_batch(h: dict[str, Any], payload: bytes, reporter: _Reporter) -> None:
    """Load the program once, then run instances ``h["start"]..`` in order, one result frame
    each (``"i"`` names the instance). After a call timeout or a MemoryError the child stops:
    the worker continues the remaining instances in a fresh process."""
    items: list[dict[str, Any]] = h["items"]
    start = int(h["start"])
    try:
        program, function, calls = _Unpickler(payload, None).load()
    except BaseException as exc:
        reporter.send({"t": "result", "i": start, "status": "refused", "error": _describe(exc)[0]})
        return
    _seed(int(items[start]["seed"]))
    module = types.ModuleType("__candidate__")
    module.__dict__["__builtins__"] = builtins
    module.__file__ = "<candidate>"
    sys.modules["__candidate__"] = module
    linecache.cache["<candidate>"] = (len(program), None, program.splitlines(True), "<candidate>")
    try:
        exec(compile(program, "<candidate>", "exec"), module.__dict__)
        fn = module.__dict__.get(function)
        if not callable(fn):
            raise NameError(f"the program defines no function {function!r}")
    except BaseException as exc:
        # Loading failed: every instance fails the same way a separate job would.
        message, tb = _describe(exc)
        for i in range(start, len(items)):
            reporter.send({"t": "start"} if i is None else {"t": "start", "i": i})
            reporter.send(
                {
                    "t": "result",
                    "i": i,
                    "status": "error",
                    "error": message,
                    "traceback": tb,
                    "memory": isinstance(exc, MemoryError),
                    "call_time_s": None,
                }
            )
        return
    for i in range(start, len(items)):
        args, kwargs = calls[i]
        _seed(int(items[i]["seed"]))
        result = _call(fn, args, kwargs, items[i].get("call_timeout_s"), int(h["result_limit_bytes"]), reporter, i)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result.update(i=i, cpu_s=usage.ru_utime + usage.ru_stime, rss_kb=usage.ru_maxrss)
        _flush()  # this instance's output reaches the worker before its result
        # Output the worker has not read yet: it must take it before the next instance writes
        # any, so this result asks for a "drained" byte back (fast instances that print nothing
        # never wait).
        result["sync"] = _unread(1) or _unread(2)
        stop = result["status"] == "call_timeout" or bool(result.get("memory"))
        if result["sync"] or stop or i + 1 == len(items):
            reporter.send(result)
        else:
            reporter.hold(result)  # sent with the next instance's start
        if stop:
            return
        if result["sync"] and i + 1 < len(items) and os.read(ACK_FD, 1) != b"+":
            return


def _call(
    fn: Any,
    args: Any,
    kwargs: Any,
    call_timeout: float | None,
    result_limit: int,
    reporter: _Reporter,
    i: int | None,
) -> dict[str, Any]:
    """One timed, encoded call: a single job's (``i`` None) or one instance of a batch."""
    started = 0.0
    try:
        reporter.send({"t": "start"} if i is None else {"t": "start", "i": i})
        started = time.perf_counter()
        _arm(call_timeout)
        value = fn(*args, **kwargs)
        signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - started
    except CallTimeout:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return {
            "t": "result",
            "status": "call_timeout",
            "call_time_s": time.perf_counter() - started,
            "error": f"CallTimeout: the call took longer than {call_timeout} s",
        }
    except BaseException as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        message, tb = _describe(exc)
        return {
            "t": "result",
            "status": "error",
            "error": message,
            "traceback": tb,
            "memory": isinstance(exc, MemoryError),
            "call_time_s": (time.perf_counter() - started) if started else None,
        }
    try:
        text = encode.dumps(value, result_limit)
    except CallTimeout:
        return {"t": "result", "status": "call_timeout", "error": "CallTimeout while encoding"}
    except BaseException as exc:
        return {"t": "result", "status": "invalid_output", "error": _describe(exc)[0], "call_time_s": elapsed}
    return {"t": "result", "status": "ok", "value_json": text.decode(), "call_time_s": elapsed}


def _unread(fd: int) -> bool:
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    except OSError:
        return True
    return buf[0] > 0


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise CallTimeout()


def _arm(call_timeout: float | None) -> None:
    if call_timeout:
        # Re-installed whenever the program replaced it (a handler installed behind Python's
        # back, or a disarmed timer, leaves the worker's backstop to end the call).
        if signal.getsignal(signal.SIGALRM) is not _on_alarm:
            signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, float(call_timeout))
