"""Helpers of the sandbox tests (a uniquely named module, importable from any test file)."""

from __future__ import annotations

import os

from stop_require import require

from sandbox import SandboxConfig, detect_layers

MODES = ("bwrap", "landlock")


def mode_config(mode: str, workers: int = 2) -> SandboxConfig:
    """``bwrap``: every layer; ``landlock``: the fallback without namespaces."""
    return SandboxConfig(workers=workers, use_bubblewrap=(mode == "bwrap") or False)


def skip_unless(mode: str) -> None:
    """Each mode needs only its own layer: bubblewrap for ``bwrap``, Landlock for ``landlock``,
    and ``any`` (the default configuration) needs either one.

    Under ``STOP_REQUIRE=sandbox`` (CI) a missing layer fails the test instead of skipping it."""
    layers = detect_layers()
    if mode == "any":
        if not layers.isolated:
            require("sandbox", "neither bubblewrap nor Landlock works here (stop doctor says why)")
    elif mode == "bwrap":
        if not layers.active("bubblewrap"):
            require(
                "sandbox",
                f"bubblewrap is unusable here: {layers.get('bubblewrap').detail} (make sandbox-deps installs it)",
            )
    elif not layers.active("landlock"):
        require("sandbox", f"Landlock is unavailable here: {layers.get('landlock').detail}")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (host pids)."""
    tree = _children()
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out
