"""Per-job confinement applied by the forked child: rlimits, capabilities, Landlock, seccomp.

Everything that costs time (loading libc, opening O_PATH fds for the read-only runtime paths,
building the seccomp program buffer) is done once by ``Confiner.prepare`` in the worker, before
any fork: the child only issues a handful of syscalls (measured: ~0.5 ms in total).
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import stat
from typing import Any

# Landlock (syscall numbers are the same on every architecture: they postdate the unified table).
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REFER = 1 << 13
FS_TRUNCATE = 1 << 14
FS_IOCTL_DEV = 1 << 15
NET_BIND_TCP = 1
NET_CONNECT_TCP = 2
SCOPE_ABSTRACT_UNIX = 1
SCOPE_SIGNAL = 2

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_SET_DUMPABLE = 4
PR_SET_PDEATHSIG = 1
SECCOMP_MODE_FILTER = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is unavailable."""
    try:
        libc = _libc()
        abi = libc.syscall(
            ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET),
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION),
        )
    except OSError:
        return 0
    return int(abi) if abi > 0 else 0


def _fs_all(abi: int) -> int:
    mask = (1 << 13) - 1
    if abi >= 2:
        mask |= FS_REFER
    if abi >= 3:
        mask |= FS_TRUNCATE
    if abi >= 5:
        mask |= FS_IOCTL_DEV
    return mask


def _file_rights(abi: int) -> int:
    mask = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE
    if abi >= 3:
        mask |= FS_TRUNCATE
    if abi >= 5:
        mask |= FS_IOCTL_DEV
    return mask


def _oserror(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


class Confiner:
    """Holds the pre-resolved pieces; ``apply`` runs in the child after fork."""

    def __init__(
        self, *, landlock: bool, seccomp_bpf: bytes | None, capdrop: bool, ro_paths: list[str], rw_devices: list[str]
    ) -> None:
        self.use_landlock = landlock
        self.capdrop = capdrop
        self.libc = _libc()
        self.abi = landlock_abi() if landlock else 0
        if landlock and self.abi <= 0:
            raise OSError("Landlock was requested but the kernel does not offer it here")
        self._ro: list[tuple[int, int]] = []
        if landlock:
            ro_dir = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
            file_rights = _file_rights(self.abi)
            for path in ro_paths:
                self._add_path(path, ro_dir, ro_dir & file_rights)
            for path in rw_devices:
                self._add_path(path, file_rights, file_rights)
        self._bpf_buf: Any = None
        self._fprog: _SockFprog | None = None
        if seccomp_bpf is not None:
            if len(seccomp_bpf) % 8:
                raise ValueError("seccomp BPF length is not a multiple of 8")
            self._bpf_buf = ctypes.create_string_buffer(seccomp_bpf, len(seccomp_bpf))
            self._fprog = _SockFprog(len(seccomp_bpf) // 8, ctypes.addressof(self._bpf_buf))
        self._cap_header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        self._cap_data = (_CapData * 2)()

    def _add_path(self, path: str, dir_rights: int, file_rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # a runtime path that does not exist here needs no rule
        rights = dir_rights if stat.S_ISDIR(os.fstat(fd).st_mode) else file_rights
        self._ro.append((fd, rights))

    # --- worker side, per job -------------------------------------------------------------
    def make_ruleset(self, scratch: str) -> int:
        """A fresh ruleset (runtime read-only, scratch read-write, TCP denied, scoped)."""
        if not self.use_landlock:
            return -1
        abi = self.abi
        attr = _RulesetAttr(
            _fs_all(abi),
            (NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0,
            (SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL) if abi >= 6 else 0,
        )
        size = 24 if abi >= 6 else 16 if abi >= 4 else 8
        sc = self.libc.syscall
        fd = sc(
            ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
        )
        if fd < 0:
            raise _oserror("landlock_create_ruleset")
        scratch_fd = os.open(scratch, os.O_PATH | os.O_CLOEXEC)
        try:
            for parent_fd, rights in [*self._ro, (scratch_fd, _fs_all(abi))]:
                rule = _PathBeneath(rights, parent_fd)
                if (
                    sc(
                        ctypes.c_long(SYS_LANDLOCK_ADD_RULE),
                        ctypes.c_int(fd),
                        ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                        ctypes.byref(rule),
                        ctypes.c_uint32(0),
                    )
                    < 0
                ):
                    raise _oserror("landlock_add_rule")
        except BaseException:
            os.close(fd)
            raise
        finally:
            os.close(scratch_fd)
        return int(fd)

    # --- child side ------------------------------------------------------------------------
    @staticmethod
    def set_rlimits(*, cpu_s: float, memory_mb: int, file_size_mb: int, open_files: int) -> None:
        cpu = max(1, math.ceil(cpu_s))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        fsize = file_size_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def die_with_parent(self) -> None:
        """SIGKILL when the worker dies (a spare waiting for a job, or a job it was watching)."""
        if self.libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0) != 0:
            raise _oserror("prctl(PDEATHSIG)")

    def drop_caps(self) -> None:
        if self.capdrop and self.libc.capset(ctypes.byref(self._cap_header), ctypes.byref(self._cap_data)) != 0:
            raise _oserror("capset")

    def no_new_privs(self) -> None:
        if self.libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _oserror("prctl(NO_NEW_PRIVS)")

    def restrict(self, ruleset_fd: int) -> None:
        if ruleset_fd < 0:
            return
        if (
            self.libc.syscall(ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset_fd), ctypes.c_uint32(0))
            != 0
        ):
            raise _oserror("landlock_restrict_self")

    def load_seccomp(self) -> None:
        if self._fprog is None:
            return
        if self.libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(self._fprog), 0, 0) != 0:
            raise _oserror("prctl(SET_SECCOMP)")


def harden_worker(libc: Any | None = None) -> None:
    """Worker-wide settings: not dumpable (its memory and fds are not readable through /proc by
    a job that lost its capabilities) and die with the host."""
    libc = libc or _libc()
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
