"""The escape suite: every attack is checked from the host side (its real effect), in each
isolation mode (bubblewrap + all layers, and the Landlock + seccomp fallback).

Safety of the probes: network attacks aim only at listeners this test opens on 127.0.0.1 or on
unix sockets; the one aimed at 192.0.2.1 stops by construction if socket() works (it never
connects). Writes target canary paths only; the only process signalled is our canary.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox import Job, JobResult, SandboxPool

REPO = Path(__file__).resolve().parents[2]
SECRET = "HOSTSECRET"


@dataclass
class Targets:
    tcp: socket.socket
    udp: socket.socket
    unix_stream: socket.socket
    unix_dgram: socket.socket
    abstract: socket.socket
    canary: subprocess.Popen[bytes]
    canary_dir: Path
    unix_dir: Path
    tmp_canary: Path
    repo_canary: Path

    def info(self) -> dict[str, Any]:
        return {
            "tcp_port": self.tcp.getsockname()[1],
            "udp_port": self.udp.getsockname()[1],
            "unix_stream": str(self.unix_dir / "stream.sock"),
            "unix_dgram": str(self.unix_dir / "dgram.sock"),
            "abstract": self.abstract.getsockname().decode("latin1")
            if isinstance(self.abstract.getsockname(), bytes)
            else self.abstract.getsockname(),
            "canary_pid": self.canary.pid,
            "canary_dir": str(self.canary_dir),
            "secret_file": str(self.canary_dir / "secret.txt"),
            "tmp_canary": str(self.tmp_canary),
            "repo_canary": str(self.repo_canary),
            "host_pid": os.getpid(),
            "repo": str(REPO),
        }

    def arrivals(self) -> list[str]:
        """Anything that reached a listener (and resets them)."""
        seen: list[str] = []
        for name, sock in (("tcp", self.tcp), ("unix_stream", self.unix_stream), ("abstract", self.abstract)):
            try:
                conn, _ = sock.accept()
                seen.append(name)
                conn.close()
            except (BlockingIOError, InterruptedError):
                pass
        for name, sock in (("udp", self.udp), ("unix_dgram", self.unix_dgram)):
            try:
                sock.recv(65536)
                seen.append(name)
            except (BlockingIOError, InterruptedError):
                pass
        return seen

    def files_written(self) -> list[str]:
        found = [p.name for p in self.canary_dir.iterdir() if p.name != "secret.txt"]
        for path in (self.tmp_canary, self.repo_canary):
            if path.exists():
                found.append(str(path))
                path.unlink()
        return found


@pytest.fixture(scope="module")
def targets() -> Iterator[Targets]:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    unix_dir = Path(tempfile.mkdtemp(prefix="stop-escape-sock-"))
    os.chmod(unix_dir, 0o777)
    ustream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ustream.bind(str(unix_dir / "stream.sock"))
    ustream.listen(8)
    udgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    udgram.bind(str(unix_dir / "dgram.sock"))
    os.chmod(unix_dir / "stream.sock", 0o777)
    os.chmod(unix_dir / "dgram.sock", 0o777)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0stop-escape-{uuid.uuid4().hex}")
    abstract.listen(8)
    for s in (tcp, udp, ustream, udgram, abstract):
        s.setblocking(False)
    canary = subprocess.Popen(["sleep", "3600"])
    canary_dir = Path(tempfile.mkdtemp(prefix="stop-escape-canary-"))
    (canary_dir / "secret.txt").write_text(f"{SECRET}-FILE\n")
    t = Targets(
        tcp,
        udp,
        ustream,
        udgram,
        abstract,
        canary,
        canary_dir,
        unix_dir,
        Path(tempfile.gettempdir()) / f"stop-escape-{uuid.uuid4().hex}",
        REPO / f".sandbox-escape-canary-{uuid.uuid4().hex}",
    )
    yield t
    canary.kill()
    canary.wait()
    for s in (tcp, udp, ustream, udgram, abstract):
        s.close()
    for d in (canary_dir, unix_dir):
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


Check = Callable[[JobResult, Targets], None]


@dataclass(frozen=True)
class Attack:
    name: str
    program: str
    check: Check
    limits: tuple[tuple[str, Any], ...] = ()


def no_secret(r: JobResult, t: Targets) -> None:
    blob = json.dumps(r.to_json())
    assert SECRET not in blob, f"secret leaked: {blob[:500]}"


def value_is(expected: Any) -> Check:
    def check(r: JobResult, t: Targets) -> None:
        assert r.status == "ok", (r.status, r.error, r.traceback)
        assert r.value == expected, r.value

    return check


def status_is(*statuses: str) -> Check:
    def check(r: JobResult, t: Targets) -> None:
        assert r.status in statuses, (r.status, r.error, r.stderr[-500:])

    return check


def holds(what: str, predicate: Callable[[JobResult], bool]) -> Check:
    """A named condition on the result, asserted (with the result in the message when it fails)."""

    def check(r: JobResult, t: Targets) -> None:
        assert predicate(r), f"{what}: not so (status={r.status}, error={r.error!r}, signal={r.signal!r})"

    return check


def all_of(*checks: Check) -> Check:
    """Every check must pass; each one asserts, so none is computed and dropped."""

    def check(r: JobResult, t: Targets) -> None:
        for c in checks:
            c(r, t)

    return check


def all_denied(r: JobResult, t: Targets) -> None:
    assert r.status == "ok", (r.status, r.error, r.traceback)
    bad = {k: v for k, v in r.value.items() if not str(v).startswith("denied")}
    assert not bad, bad


ATTACKS: list[Attack] = []


def attack(name: str, check: Check, **limits: Any) -> Callable[[str], str]:
    def register(program: str) -> str:
        ATTACKS.append(Attack(name, program, check, tuple(limits.items())))
        return program

    return register


# --- network ---------------------------------------------------------------------------------
attack("tcp_connect_loopback", all_denied)("""
def attack(t):
    import socket
    try:
        socket.create_connection(("127.0.0.1", t["tcp_port"]), timeout=1).sendall(b"x")
        return {"tcp": "CONNECTED"}
    except OSError as e:
        return {"tcp": f"denied {e}"}
""")
attack("tcp_fast_open", all_denied)("""
def attack(t):
    import socket
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as e:
        return {"tfo": f"denied {e}"}
    try:
        s.sendto(b"x", socket.MSG_FASTOPEN, ("127.0.0.1", t["tcp_port"]))
        return {"tfo": "SENT"}
    except OSError as e:
        return {"tfo": f"denied-late {e}"}
""")
attack("udp_sendto_loopback", all_denied)("""
def attack(t):
    import socket
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"x", ("127.0.0.1", t["udp_port"]))
        return {"udp": "SENT"}
    except OSError as e:
        return {"udp": f"denied {e}"}
""")
attack("external_address_needs_socket", all_denied)("""
def attack(t):
    import socket
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as e:
        return {"ext": f"denied {e}"}
    s.close()  # never connect outward: a created socket is already the failure
    return {"ext": "SOCKET CREATED (192.0.2.1 not attempted)"}
""")
attack("unix_pathname_connect", all_denied)("""
def attack(t):
    import socket
    out = {}
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(t["unix_stream"]); s.sendall(b"x")
        out["stream"] = "CONNECTED"
    except OSError as e:
        out["stream"] = f"denied {e}"
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"x", t["unix_dgram"])
        out["dgram"] = "SENT"
    except OSError as e:
        out["dgram"] = f"denied {e}"
    return out
""")
attack("unix_abstract_connect", all_denied)("""
def attack(t):
    import socket
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(t["abstract"]); s.sendall(b"x")
        return {"abstract": "CONNECTED"}
    except OSError as e:
        return {"abstract": f"denied {e}"}
""")
attack("socketpair_dgram_sendto_path", all_denied)("""
def attack(t):
    import socket
    out = {}
    try:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        a.sendto(b"x", t["unix_dgram"])
        out["pair"] = "SENT"
    except OSError as e:
        out["pair"] = f"denied {e}"
    return out
""")
attack("asyncio_still_works", value_is(3))("""
def attack(t):
    import asyncio
    async def main():
        await asyncio.sleep(0)
        return 3
    return asyncio.run(main())
""")

# --- file system -------------------------------------------------------------------------------
attack("write_outside_scratch", all_denied)("""
def attack(t):
    out = {}
    for key in ("tmp_canary", "canary_dir"):
        path = t[key] if key == "tmp_canary" else t["canary_dir"] + "/written"
        try:
            with open(path, "w") as fh:
                fh.write("pwned")
            out[key] = "WRITTEN"
        except OSError as e:
            out[key] = f"denied {e}"
    if out["tmp_canary"].startswith("denied"):  # gate: only then try the repository
        try:
            with open(t["repo_canary"], "w") as fh:
                fh.write("pwned")
            out["repo"] = "WRITTEN"
        except OSError as e:
            out["repo"] = f"denied {e}"
    return out
""")
attack("read_etc_shadow_and_passwd", all_denied)("""
def attack(t):
    out = {}
    for path in ("/etc/shadow", "/etc/passwd", "/etc/hostname"):
        try:
            out[path] = "READ " + open(path).read()[:100]
        except OSError as e:
            out[path] = f"denied {e}"
    return out
""")
attack("read_host_secret_file", all_denied)("""
def attack(t):
    out = {}
    for path in (t["secret_file"], t["repo"] + "/pyproject.toml", "/root/.bashrc"):
        try:
            out[path] = "READ " + open(path).read()[:100]
        except OSError as e:
            out[path] = f"denied {e}"
    return out
""")
attack("list_host_directories", all_denied)("""
def attack(t):
    import os
    out = {}
    for path in (t["repo"], t["canary_dir"], "/root", "/home", "/etc", "/"):
        try:
            names = os.listdir(path)
            out[path] = "denied (empty)" if not names else "LISTED " + ",".join(sorted(names)[:20])
        except OSError as e:
            out[path] = f"denied {e}"
    return out
""")
attack("symlink_and_hardlink_out_of_scratch", all_denied)("""
def attack(t):
    import os
    out = {}
    try:
        os.symlink(t["secret_file"], "link")
        out["symlink"] = "READ " + open("link").read()
    except OSError as e:
        out["symlink"] = f"denied {e}"
    try:
        os.link(t["secret_file"], "hard")
        out["hardlink"] = "READ " + open("hard").read()
    except OSError as e:
        out["hardlink"] = f"denied {e}"
    return out
""")
attack(
    "big_file_in_scratch",
    all_of(status_is("error"), holds("the file-size limit stopped it", lambda r: "File too large" in (r.error or ""))),
)("""
def attack(t):
    with open("big.bin", "wb") as fh:
        for _ in range(100):
            fh.write(b"\\0" * (1 << 20))
    return "WROTE 100 MB"
""")

# --- /proc tricks ------------------------------------------------------------------------------
FORGED = json.dumps({"op": "done", "id": 1, "status": "ok", "value": 1e9})
attack("proc_parent_environ_mem_fd", all_denied)(
    """
def attack(t):
    import os, struct
    out = {}
    for pid in sorted({os.getppid(), 1, t["host_pid"]}):
        for name in ("environ", "mem", "cmdline", "maps"):
            try:
                mode = "r+b" if name == "mem" else "rb"
                with open(f"/proc/{pid}/{name}", mode) as fh:
                    data = fh.read(4096)
                out[f"{pid}/{name}"] = ("denied (no secret)" if b"HOSTSECRET" not in data
                                         else "LEAKED")
            except OSError as e:
                out[f"{pid}/{name}"] = f"denied {e}"
    forged = 0
    frame = FORGED.encode()
    for pid in sorted({os.getppid(), 1}):
        for fd in range(64):
            try:
                with open(f"/proc/{pid}/fd/{fd}", "wb") as fh:
                    fh.write(struct.pack(">I", len(frame)) + frame)
                forged += 1
            except OSError:
                pass
    out["forged_frames"] = "denied" if forged == 0 else f"WROTE {forged}"
    try:
        os.listdir(f"/proc/{t['host_pid']}/cwd")
        out["host_cwd"] = "LISTED"
    except OSError as e:
        out["host_cwd"] = f"denied {e}"
    return out
""".replace("FORGED", repr(FORGED))
)
attack("environment_has_no_keys", lambda r, t: (no_secret(r, t), value_is([])(r, t)) and None)("""
def attack(t):
    import os
    return [k for k in os.environ if "KEY" in k or "TOKEN" in k or "SECRET" in k]
""")

# --- processes and signals ---------------------------------------------------------------------
attack("signal_parent_and_init", all_denied)("""
def attack(t):
    import os, signal
    out = {}
    for pid in sorted({os.getppid(), 1}):
        try:
            os.kill(pid, signal.SIGKILL)
            out[str(pid)] = "SIGNALLED"
        except OSError as e:
            out[str(pid)] = f"denied {e}"
    return out
""")
attack("signal_host_canary", all_denied)("""
def attack(t):
    import os, signal
    out = {}
    try:
        os.kill(t["canary_pid"], signal.SIGKILL)
        out["kill"] = "SIGNALLED"
    except OSError as e:
        out["kill"] = f"denied {e}"
    try:
        fd = os.pidfd_open(t["canary_pid"])
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        out["pidfd"] = "SIGNALLED"
    except OSError as e:
        out["pidfd"] = f"denied {e}"
    return out
""")
attack("scan_signalable_pids", value_is(0))("""
def attack(t):
    import os
    me, n = os.getpid(), 0
    for pid in range(1, 40000):
        if pid == me:
            continue
        try:
            os.kill(pid, 0)
            n += 1
        except OSError:
            pass
    return n
""")
attack("spawn_shell", all_denied)("""
def attack(t):
    import os, subprocess
    out = {}
    target = t["canary_dir"] + "/shell"
    try:
        subprocess.run(["/bin/sh", "-c", f"echo pwned > {target}"], check=True)
        out["subprocess"] = "SPAWNED"
    except (OSError, subprocess.SubprocessError) as e:
        out["subprocess"] = f"denied {e}"
    rc = os.system(f"echo pwned > {target}")
    out["system"] = f"denied rc={rc}" if rc != 0 else "SPAWNED"
    try:
        os.posix_spawn("/bin/sh", ["sh", "-c", f"echo pwned > {target}"], {})
        out["posix_spawn"] = "SPAWNED"
    except OSError as e:
        out["posix_spawn"] = f"denied {e}"
    try:
        os.execv("/bin/sh", ["sh", "-c", f"echo pwned > {target}"])
    except OSError as e:
        out["execv"] = f"denied {e}"
    return out
""")
attack("fork_bomb_bounded", value_is(0))("""
def attack(t):
    import os, time
    n = 0
    for _ in range(50):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
    return n
""")
attack("daemon_double_fork", all_denied)("""
def attack(t):
    import os, time, signal
    try:
        if os.fork() == 0:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        return {"daemon": "FORKED"}
    except OSError as e:
        return {"daemon": f"denied {e}"}
""")
attack("thread_bomb_bounded", status_is("ok", "error", "memory"))("""
def attack(t):
    import threading, time
    started = 0
    stop = threading.Event()
    for _ in range(2000):
        try:
            threading.Thread(target=stop.wait, daemon=False).start()
            started += 1
        except RuntimeError:
            break
    return started  # non-daemon threads are still running: the job must still end
""")
attack("thread_left_running", value_is("returned"))("""
def attack(t):
    import threading
    def spin():
        while True:
            pass
    threading.Thread(target=spin, daemon=False).start()
    return "returned"
""")

# --- raw syscalls ---------------------------------------------------------------------------------
attack("ctypes_raw_syscalls", all_denied)("""
def attack(t):
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    calls = {
        "socket": (41, 2, 1, 0), "unshare_user": (272, 0x10000000), "unshare_net": (272, 0x40000000),
        "ptrace_attach": (101, 16, os.getppid(), 0, 0), "mount": (165, 0, 0, 0, 0, 0),
        "bpf": (321, 0, 0, 0), "io_uring_setup": (425, 8, 0), "setns": (308, 0, 0),
        "perf_event_open": (298, 0, 0, -1, -1, 0), "userfaultfd": (323, 0),
        "keyctl": (250, 0, 0, 0, 0, 0), "process_vm_readv": (310, os.getppid(), 0, 0, 0, 0, 0),
        "clone_process": (56, 17, 0, 0, 0, 0), "execve": (59, 0, 0, 0),
    }
    out = {}
    for name, (nr, *args) in calls.items():
        r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
        if r == 0 and name == "clone_process":
            os._exit(0)
        out[name] = f"denied errno={ctypes.get_errno()}" if r == -1 else f"RETURNED {r}"
    return out
""")
attack(
    "x32_syscall_killed",
    all_of(status_is("crashed"), holds("seccomp killed it with SIGSYS", lambda r: r.signal == "SIGSYS")),
)("""
def attack(t):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.syscall(ctypes.c_long(41 | 0x40000000), 2, 1, 0)
    return f"RETURNED {r}"
""")
attack("raise_rlimits", status_is("memory"))("""
def attack(t):
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass
    return len(bytearray(4 << 30))
""")

# --- resources ---------------------------------------------------------------------------------
attack("allocate_10_gb", status_is("memory"))("""
def attack(t):
    return len(bytearray(10 << 30))
""")
attack("numpy_allocate_10_gb", status_is("memory"))("""
def attack(t):
    import numpy as np
    return int(np.ones(10 ** 10 // 8 * 8).sum())
""")
attack("infinite_loop_cpu", status_is("cpu_limit"), cpu_s=1.0, wall_timeout_s=20.0)("""
def attack(t):
    while True:
        pass
""")
attack("infinite_loop_ignoring_sigxcpu", status_is("cpu_limit"), cpu_s=1.0, wall_timeout_s=20.0)("""
def attack(t):
    import signal
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    while True:
        pass
""")
attack("sleep_forever_wall", status_is("timeout"), wall_timeout_s=1.0)("""
def attack(t):
    import time
    time.sleep(1000)
""")
attack("swallow_call_timeout", status_is("call_timeout"), call_timeout_s=0.3, wall_timeout_s=20.0)("""
def attack(t):
    import signal
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass
""")
attack(
    "output_flood_10_gb",
    all_of(status_is("output_limit"), holds("stdout was truncated", lambda r: bool(r.stdout_truncated))),
)("""
def attack(t):
    import sys
    block = "x" * 65536
    for _ in range(10 * 16384):
        sys.stdout.write(block)
""")
attack("stderr_flood", status_is("output_limit"))("""
def attack(t):
    import os
    block = b"y" * 65536
    while True:
        os.write(2, block)
""")
attack("huge_return_value", status_is("invalid_output"))("""
def attack(t):
    return "x" * (100 << 20)
""")

# --- result forgery ----------------------------------------------------------------------------
attack("forge_result_on_stdout", value_is(0.25))("""
def attack(t):
    import json, sys
    print(json.dumps({"status": "ok", "value": 1.0, "score": 100}))
    sys.stdout.write('{"op": "done", "status": "ok", "value": 1e9}\\n')
    return 0.25
""")
attack(
    "forge_second_result_frame",
    all_of(
        status_is("invalid_output"), holds("the forged frame was recorded", lambda r: "result:forged" in r.violations)
    ),
)("""
def attack(t):
    import json, os, struct
    frame = json.dumps({"t": "result", "status": "ok", "value_json": "1000000000.0"}).encode()
    os.write(3, struct.pack(">I", len(frame)) + frame)
    return 0.25
""")
attack("always_equal_object", status_is("invalid_output"))("""
class AlwaysEqual(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def attack(t):
    return [AlwaysEqual(1)]
""")


@pytest.mark.anyio
@pytest.mark.parametrize("atk", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_attack_is_contained(
    pool: SandboxPool, targets: Targets, atk: Attack, process_census: Callable[[SandboxPool], Awaitable[set[object]]]
) -> None:
    """The attack has no effect outside its job and leaves no process behind."""
    if "ctypes" in atk.name and platform.machine() != "x86_64":
        pytest.skip("raw syscall numbers are for x86_64")
    before = await process_census(pool)
    workers = pool.worker_pids()
    limits = dict(atk.limits)
    limits.setdefault("wall_timeout_s", 15.0)
    result = await pool.run(Job(program=atk.program, function="attack", args=[targets.info()], **limits))
    assert targets.arrivals() == []
    assert targets.files_written() == []
    assert targets.canary.poll() is None, "the canary process was killed"
    assert pool.worker_pids() == workers, "a worker died"
    assert await process_census(pool) == before, "a process of the job survived it"
    no_secret(result, targets)
    atk.check(result, targets)
    follow = await pool.run(Job(program="def f(x):\n    return x + 1\n", function="f", args=[41]))
    assert follow.status == "ok" and follow.value == 42


def test_suite_is_large_enough() -> None:
    assert len(ATTACKS) >= 30


_BATCH_ENTRY = """

def batch_entry(i, t):
    return attack(t) if i == 1 else "fine"
"""


@pytest.mark.anyio
@pytest.mark.parametrize("atk", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_attack_is_contained_inside_a_batch(
    pool: SandboxPool, targets: Targets, atk: Attack, process_census: Callable[[SandboxPool], Awaitable[set[object]]]
) -> None:
    """The same attack as the middle instance of a batch (one process for the instances): the
    same containment, the same outcome for it, and the instance before it is scored."""
    if "ctypes" in atk.name and platform.machine() != "x86_64":
        pytest.skip("raw syscall numbers are for x86_64")
    before = await process_census(pool)
    workers = pool.worker_pids()
    limits = dict(atk.limits)
    limits.setdefault("wall_timeout_s", 15.0)
    program = atk.program + _BATCH_ENTRY
    jobs = [Job(program=program, function="batch_entry", args=[i, targets.info()], **limits) for i in range(3)]
    results = await pool.run_batch(jobs)
    assert targets.arrivals() == []
    assert targets.files_written() == []
    assert targets.canary.poll() is None, "the canary process was killed"
    assert pool.worker_pids() == workers, "a worker died"
    assert await process_census(pool) == before, "a process of the batch survived it"
    for r in results:
        no_secret(r, targets)
    assert results[0].status == "ok" and results[0].value == "fine", results[0]
    atk.check(results[1], targets)
