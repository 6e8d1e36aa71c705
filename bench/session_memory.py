"""Memory of improver sessions waiting on the model: ``python -m bench.session_memory [N]``.

Starts N sandboxed sessions whose program calls ``utility(...)`` and is then kept waiting (the
host does not answer, as while the model is thinking), and reports the RSS and PSS the waiting
sessions add to this process's tree (every bubblewrap, worker and child process), per session,
from ``/proc/PID/smaps_rollup``. PSS shares the pages the forked processes have in common.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import structlog

from sandbox import Job, SandboxConfig, SandboxPool, UtilityProxy

PROGRAM = "import numpy as np\n\ndef improve(u):\n    return u('def f():\\n    return 1\\n')\n"


def _tree(root: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for k in kids.get(pid, []):
            if k not in found:
                found.add(k)
                todo.append(k)
    return found


def _memory_kb(pids: set[int]) -> tuple[int, int]:
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key == "Rss":
                    rss += int(rest.split()[0])
                elif key == "Pss":
                    pss += int(rest.split()[0])
        except (OSError, ValueError):
            continue
    return rss, pss


async def measure(n: int) -> dict[str, Any]:
    async with SandboxPool(SandboxConfig(workers=1)) as pool:
        before = _memory_kb(_tree(os.getpid()))
        release, all_waiting = anyio.Event(), anyio.Event()
        asked = 0

        async def hold(kind: str, body: dict[str, Any], occurrence: int) -> Any:
            nonlocal asked
            asked += 1
            if asked == n:
                all_waiting.set()
            await release.wait()
            return 0.5

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                job = Job(program=PROGRAM, function="improve", args=[UtilityProxy("u", 1)], wall_timeout_s=120)
                tg.start_soon(pool.run_session, job, hold)
            with anyio.fail_after(120):
                await all_waiting.wait()
            during = _memory_kb(_tree(os.getpid()))
            release.set()
    rss, pss = during[0] - before[0], during[1] - before[1]
    return {"sessions": n, "rss_kb_per_session": rss // n, "pss_kb_per_session": pss // n}


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 5
    with structlog.testing.capture_logs():
        got = anyio.run(measure, n)
    print(
        f"{got['sessions']} waiting sessions: {got['rss_kb_per_session'] / 1024:.1f} MiB RSS, "
        f"{got['pss_kb_per_session'] / 1024:.1f} MiB PSS per session"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
