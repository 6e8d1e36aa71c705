"""Processes of a run, read from /proc (psutil is not a dependency)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ("descendants", "session_members")


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of ``pid``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[3])


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (not ``root`` itself)."""
    parents: dict[int, list[int]] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None:
            parents.setdefault(st[0], []).append(pid)
    out: set[int] = set()
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def session_members(sessions: set[int]) -> set[int]:
    """Live processes whose session id is one of ``sessions`` (sandbox workers start their own)."""
    out: set[int] = set()
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None and st[1] in sessions:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if st else ""
            if state != "Z":
                out.add(pid)
    return out
