"""Which isolation layers work on this machine (``detect_layers``) and the report of them."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, replace
from typing import Any

from .stop_guest.confine import landlock_abi

__all__ = ("LAYER_NAMES", "Layer", "LayerReport", "detect_layers")

LAYER_NAMES = ("bubblewrap", "landlock", "seccomp", "rlimits", "capdrop")


@dataclass(frozen=True)
class Layer:
    name: str
    active: bool
    detail: str


@dataclass(frozen=True)
class LayerReport:
    """Layers available (from ``detect_layers``) or in use (``SandboxPool.layers``).

    ``isolated`` is true when namespaces or Landlock confine the file system; without either
    the pool refuses to run untrusted code unless ``unsafe_no_sandbox`` was chosen, which this
    report then records.
    """

    layers: tuple[Layer, ...]
    unsafe_no_sandbox: bool = False
    landlock_abi: int = 0
    notes: tuple[str, ...] = field(default=())

    def get(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        return Layer(name, False, "unknown layer")

    def active(self, name: str) -> bool:
        return self.get(name).active

    @property
    def isolated(self) -> bool:
        return (self.active("bubblewrap") or self.active("landlock")) and not self.unsafe_no_sandbox

    def missing(self) -> list[str]:
        return [f"{layer.name}: {layer.detail}" for layer in self.layers if not layer.active]

    def without(self, *names: str, reason: str = "disabled by configuration") -> LayerReport:
        """A copy with the named layers marked inactive (configuration or tests)."""
        layers = tuple(
            Layer(layer.name, False, reason) if layer.name in names and layer.active else layer for layer in self.layers
        )
        return replace(self, layers=layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "isolated": self.isolated,
            "unsafe_no_sandbox": self.unsafe_no_sandbox,
            "landlock_abi": self.landlock_abi,
            "layers": {layer.name: {"active": layer.active, "detail": layer.detail} for layer in self.layers},
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        active = [layer.name for layer in self.layers if layer.active]
        text = "active: " + (", ".join(active) or "none")
        if self.unsafe_no_sandbox:
            text = "UNSAFE (no sandbox) - " + text
        return text


def bwrap_base_args() -> list[str]:
    return [
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
    ]


def _probe_bwrap() -> Layer:
    path = shutil.which("bwrap")
    if path is None:
        return Layer("bubblewrap", False, "bwrap is not installed (apt-get install bubblewrap)")
    cmd = [
        path,
        *bwrap_base_args(),
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--",
        "/usr/bin/true",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=20, env={}, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Layer("bubblewrap", False, f"bwrap failed to run: {exc}")
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[:200]
        return Layer("bubblewrap", False, f"bwrap cannot create namespaces here: {err}")
    return Layer("bubblewrap", True, f"{path}: user/net/pid/ipc/uts/mount namespaces")


def _probe_seccomp() -> Layer:
    try:
        from ._seccomp import build_bpf

        size = len(build_bpf())
    except Exception as exc:  # noqa: BLE001 - ImportError, OSError from libseccomp: report, don't crash
        return Layer("seccomp", False, f"libseccomp/pyseccomp unusable: {exc!r}")
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            if "Seccomp_filters" not in fh.read() and not os.path.exists("/proc/sys/kernel/seccomp"):
                return Layer("seccomp", False, "the kernel has no seccomp filter support")
    except OSError:
        pass
    return Layer("seccomp", True, f"deny-list filter, {size // 8} BPF instructions")


@functools.lru_cache(maxsize=1)
def detect_layers() -> LayerReport:
    """Probe once per process (about 10 ms, mostly one bwrap start)."""
    abi = landlock_abi()
    landlock = (
        Layer(
            "landlock",
            True,
            f"ABI {abi}: fs rules"
            + (", TCP deny" if abi >= 4 else "")
            + (", signal/abstract-socket scoping" if abi >= 6 else ""),
        )
        if abi > 0
        else Layer("landlock", False, "the kernel offers no Landlock here")
    )
    notes: list[str] = []
    if 0 < abi < 6:
        notes.append("Landlock ABI < 6: no signal scoping; bubblewrap's pid namespace covers it")
    if os.geteuid() == 0:
        notes.append("running as root: RLIMIT_NPROC is ignored; fork is denied by seccomp")
    return LayerReport(
        layers=(
            _probe_bwrap(),
            landlock,
            _probe_seccomp(),
            Layer("rlimits", True, "CPU, address space, file size, open files, core"),
            Layer("capdrop", True, "capabilities cleared in every job"),
        ),
        landlock_abi=abi,
        notes=tuple(notes),
    )


def python_for_workers() -> str:
    return sys.executable
