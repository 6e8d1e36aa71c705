"""Isolated execution of untrusted programs (candidate solutions and improvers).

Warm workers (one per core) fork once per job; the child confines itself (rlimits, dropped
capabilities, Landlock, seccomp) inside a bubblewrap namespace sandbox when available, runs the
program and reports data-only JSON. See ``sandbox/README.md``.
"""

from __future__ import annotations

from ._config import SandboxConfig as SandboxConfig
from ._errors import BridgeError as BridgeError
from ._errors import SandboxError as SandboxError
from ._errors import SandboxUnavailable as SandboxUnavailable
from ._job import STATUSES as STATUSES
from ._job import Job as Job
from ._job import JobResult as JobResult
from ._job import LanguageModelProxy as LanguageModelProxy
from ._job import UtilityProxy as UtilityProxy
from ._layers import Layer as Layer
from ._layers import LayerReport as LayerReport
from ._layers import detect_layers as detect_layers
from ._pool import RequestHandler as RequestHandler
from ._pool import SandboxPool as SandboxPool
from ._scan import Finding as Finding
from ._scan import scan_program as scan_program
from ._values import InvalidValue as InvalidValue
from ._values import decode as decode_value

__all__ = (
    "STATUSES",
    "BridgeError",
    "Finding",
    "InvalidValue",
    "Job",
    "JobResult",
    "LanguageModelProxy",
    "Layer",
    "LayerReport",
    "RequestHandler",
    "SandboxConfig",
    "SandboxError",
    "SandboxPool",
    "SandboxUnavailable",
    "UtilityProxy",
    "decode_value",
    "detect_layers",
    "scan_program",
)
