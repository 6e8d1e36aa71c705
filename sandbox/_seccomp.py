"""The seccomp deny-list, compiled once on the host into BPF bytes for the workers.

Denied (EPERM): creating sockets (socketpair stays allowed for AF_UNIX stream pairs, so asyncio
works), connect/bind/listen/accept, exec, fork/vfork, clone without CLONE_THREAD or with any
CLONE_NEW* flag, namespaces, mounts, ptrace and cross-process memory/fd access, bpf, perf,
userfaultfd, io_uring, keyrings, modules, kexec, reboot, swap, clock setting. ``clone3`` gets
ENOSYS so glibc falls back to ``clone`` for threads. Foreign-architecture syscalls (x32, i386)
kill the process (libseccomp's arch check). Threads stay allowed.

Socket creation must be denied here: Landlock's TCP rule is bypassed by TCP Fast Open on some
kernels, and Landlock (ABI < 9) does not govern pathname unix-socket connects.
"""

from __future__ import annotations

import errno
import functools
import tempfile

__all__ = ("DENIED_SYSCALLS", "build_bpf")

DENIED_SYSCALLS: tuple[str, ...] = (
    "socket",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "execve",
    "execveat",
    "fork",
    "vfork",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "personality",
    "uselib",
    "vhangup",
    "name_to_handle_at",
    "open_by_handle_at",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "sethostname",
    "setdomainname",
    "lookup_dcookie",
)

CLONE_THREAD = 0x00010000
CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
AF_UNIX = 1
NON_STREAM_TYPES = (2, 3, 4, 5, 6, 10)  # DGRAM, RAW, RDM, SEQPACKET, DCCP, PACKET


@functools.lru_cache(maxsize=1)
def build_bpf() -> bytes:
    """The compiled filter (raises ImportError/OSError when libseccomp is unusable)."""
    import pyseccomp as sc

    deny = sc.ERRNO(errno.EPERM)
    flt = sc.SyscallFilter(sc.ALLOW)
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in DENIED_SYSCALLS:
        try:
            flt.add_rule(deny, name)
        except (OSError, ValueError):
            continue  # a syscall this architecture does not have
    flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
    for bit in CLONE_NEW_FLAGS:
        flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, bit, bit))
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    flt.add_rule(deny, "socketpair", sc.Arg(0, sc.NE, AF_UNIX))
    for sock_type in NON_STREAM_TYPES:
        flt.add_rule(deny, "socketpair", sc.Arg(1, sc.MASKED_EQ, 0xF, sock_type))
    with tempfile.TemporaryFile() as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()
