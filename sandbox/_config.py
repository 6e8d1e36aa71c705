"""Pool configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ("SandboxConfig",)


@dataclass(frozen=True)
class SandboxConfig:
    """Settings of a ``SandboxPool``. None of them is reachable from guest code.

    ``use_bubblewrap``: None = use it when it works, True = require it, False = never.
    ``use_landlock``/``use_seccomp``: turn a layer off (tests of fallbacks; never needed).
    ``unsafe_no_sandbox``: development only; runs jobs with rlimits and process-group kills but
    no namespaces, Landlock or seccomp. Logged loudly and recorded in ``pool.layers``.
    """

    workers: int = 0  # 0 = one per core
    unsafe_no_sandbox: bool = False
    use_bubblewrap: bool | None = None
    use_landlock: bool = True
    use_seccomp: bool = True
    python: str | None = None
    worker_start_timeout_s: float = 60.0
    backstop_grace_s: float = 10.0
    max_payload_bytes: int = 64 << 20
    #: Sanity bound on any job's time limits; improver sessions may run for hours
    #: (configs/paper.toml: ``session_timeout_s = 7200``), so a day.
    max_wall_timeout_s: float = 86400.0
    max_inflight_requests: int = 64
    #: Finished session workers kept for reuse (each forks a fresh child per session). A
    #: meta-utility runs 5 improver sessions at once beside its parent session: with 4 kept, every
    #: round of them started new workers (19 worker starts in a paper-scale generation).
    idle_session_workers: int = 8
    #: Improver sessions a runner serves at once (``RunConfig.max_sessions``); each has its own
    #: worker process, mostly waiting on the model.
    max_sessions: int = 32

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)
