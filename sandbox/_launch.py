"""How a worker interpreter is started: the command line (bwrap or direct) and its init frame.

The worker gets an environment built here from nothing (never the host's): no API keys, no
project paths. Inside bubblewrap it sees only /usr, the Python prefix, the venv and the guest
runtime, read-only, plus a private /tmp, /proc and /dev.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._layers import LayerReport, bwrap_base_args

__all__ = ("GUEST_DIR", "PRELOAD", "LaunchSpec", "make_launch")

GUEST_DIR = Path(__file__).resolve().parent / "stop_guest"
GUEST_MOUNT = "/opt/stop"
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from stop_guest.worker import main; main()"
PRELOAD = (
    "helpers",
    "numpy",
    "numpy.random",
    "numpy.linalg",
    "json",
    "math",
    "random",
    "itertools",
    "collections",
    "functools",
    "re",
    "heapq",
    "bisect",
    "string",
    "typing",
    "dataclasses",
    "statistics",
    "fractions",
    "decimal",
    "threading",
    "concurrent.futures",
    "copy",
    "operator",
    "time",
    "textwrap",
    "difflib",
    "ast",
    "io",
    "traceback",
)
TMPFS_BYTES = 512 << 20


@dataclass(frozen=True)
class LaunchSpec:
    argv: tuple[str, ...]
    env: dict[str, str]
    init: dict[str, Any]
    host_scratch: str | None  # a host directory to remove when the worker is gone

    @property
    def python(self) -> str:
        """The worker's interpreter (after bubblewrap's ``--`` when it is started inside it)."""
        argv = list(self.argv)
        return argv[argv.index("--") + 1] if "--" in argv else argv[0]


def _worker_env(tmpdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "MALLOC_ARENA_MAX": "2",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _runtime_paths() -> list[str]:
    paths = []
    for p in (
        "/usr",
        "/bin",
        "/lib",
        "/lib64",
        "/sbin",
        sys.base_prefix,
        sys.prefix,
        os.path.realpath(sys.base_prefix),
        os.path.realpath(sys.prefix),
    ):
        if p and p not in paths and os.path.exists(p):
            paths.append(p)
    return paths


def _bwrap_binds() -> list[str]:
    args: list[str] = []
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--ro-bind", "/usr", "/usr"]
    for prefix in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), sys.prefix}:
        if not prefix.startswith("/usr/") and os.path.exists(prefix):
            args += ["--ro-bind", prefix, prefix]
    return args


def _python_argv(python: str, guest_parent: str) -> list[str]:
    # -s -P instead of -I: the environment is ours (built from nothing) and must be read for
    # PYTHONHASHSEED=0, which keeps set/dict-of-str orders identical across workers and runs.
    return [python, "-s", "-P", "-B", "-c", BOOT, guest_parent]


def make_launch(layers: LayerReport, *, python: str | None = None, seccomp_bpf: bytes | None = None) -> LaunchSpec:
    python = python or sys.executable
    unsafe = layers.unsafe_no_sandbox
    init: dict[str, Any] = {
        "op": "init",
        "preload": list(PRELOAD),
        "unsafe": unsafe,
        "landlock": layers.active("landlock"),
        "seccomp_bpf": seccomp_bpf.hex() if seccomp_bpf and layers.active("seccomp") else None,
        "layers": {layer.name: layer.active for layer in layers.layers},
    }
    if layers.active("bubblewrap"):
        bwrap = shutil.which("bwrap") or "bwrap"
        env = _worker_env("/tmp")
        argv = [
            bwrap,
            *bwrap_base_args(),
            "--ro-bind",
            str(GUEST_DIR),
            f"{GUEST_MOUNT}/stop_guest",
            "--size",
            str(TMPFS_BYTES),
            "--tmpfs",
            "/tmp",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            # After the private /tmp, so a checkout or venv under /tmp is bound over it, not hidden.
            *_bwrap_binds(),
            "--chdir",
            "/tmp",
        ]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        argv += ["--", *_python_argv(python, GUEST_MOUNT)]
        init["scratch_root"] = "/tmp/scratch"
        init["ro_paths"] = [*_runtime_paths(), GUEST_MOUNT]
        return LaunchSpec(tuple(argv), env, init, None)
    scratch = tempfile.mkdtemp(prefix="stop-sandbox-")
    os.chmod(scratch, 0o700)
    init["scratch_root"] = scratch
    init["ro_paths"] = [*_runtime_paths(), str(GUEST_DIR)]
    env = _worker_env(scratch)
    return LaunchSpec(tuple(_python_argv(python, str(GUEST_DIR.parent))), env, init, scratch)
