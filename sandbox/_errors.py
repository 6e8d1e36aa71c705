"""Exceptions of the sandbox package.

SandboxError
 ├── SandboxUnavailable   no isolation layer works here (and unsafe mode was not chosen),
 │                        or a worker could not be started
 └── BridgeError          raised by an ``on_request`` handler to refuse a guest request;
                          the guest's proxy raises an exception with the same message
Outcomes of untrusted programs (errors, timeouts, limits, crashes) are never exceptions: they
are ``JobResult.status`` values.
"""

from __future__ import annotations

from outcome import EnvironmentProblem

__all__ = ("BridgeError", "SandboxError", "SandboxUnavailable")


class SandboxError(Exception):
    """Base class of the sandbox's own exceptions."""


class SandboxUnavailable(SandboxError, EnvironmentProblem):
    """Raised by ``SandboxPool`` when it cannot isolate untrusted code on this machine (exit 3)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "`stop doctor` shows which isolation layers work here and why")


class BridgeError(SandboxError):
    """Raised by a session's ``on_request`` handler to refuse one request (e.g. budget spent)."""
