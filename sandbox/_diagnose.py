"""Why a sandbox worker could not start, in one line, and what to install or change.

A worker that fails to start leaves raw evidence (an ``OSError`` from exec, bubblewrap's or the
interpreter's stderr); ``explain_start_failure`` turns it into the sentence a user needs. It
only reads that evidence, so the same words reach ``stop doctor`` and every command.
"""

from __future__ import annotations

import os
import re

__all__ = ("explain_start_failure",)

_HIDDEN = ("/tmp", "/var/tmp", "/run", "/home", "/root")


def _first_line(text: str, limit: int = 200) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:limit]


def explain_start_failure(python: str, stderr: str, exc: BaseException | None = None) -> str:
    """One line: what failed, why, and what to do (no newline, no traceback)."""
    err = stderr.strip()
    low = err.lower()
    if isinstance(exc, FileNotFoundError) and "bwrap" in str(exc.filename or ""):
        return "bubblewrap (bwrap) is not on PATH; install it (apt-get install bubblewrap, or `make sandbox-deps`)"
    if isinstance(exc, OSError) and exc.filename is not None and os.fspath(exc.filename) == python:
        what = "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be run ({exc.strerror})"
        return f"the sandbox interpreter {python} {what}; set sandbox.python to an installed Python 3.11"
    m = re.search(r"bwrap: execvp (\S+): (.+)", err)
    if m:
        where = m.group(1)
        hidden = next((d for d in _HIDDEN if where == d or where.startswith(d + "/")), None)
        why = f" ({hidden} is private inside the sandbox)" if hidden else ""
        if not os.path.exists(where):
            return f"the sandbox interpreter {where} does not exist; set sandbox.python to an installed Python 3.11"
        return (
            f"the interpreter {where} is not reachable inside the sandbox{why}; the sandbox binds /usr, the"
            " interpreter's prefix and the venv: use a venv whose Python lives in one of those, or set"
            " sandbox.python to /usr/bin/python3"
        )
    if "bwrap" in low and any(
        s in low for s in ("uid map", "no permissions to creat", "operation not permitted", "namespace")
    ):
        return (
            f"bubblewrap cannot create user namespaces here ({_first_line(err)}); enable them"
            " (sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0, or"
            " kernel.apparmor_restrict_unprivileged_userns=0), or run where they are allowed"
        )
    if "landlock" in low:
        return f"Landlock does not work inside the worker ({_first_line(err)}); use a kernel >= 5.13 with Landlock enabled (lsm=landlock)"
    if "modulenotfounderror" in low or "no module named" in low:
        return (
            f"the sandbox interpreter {python} cannot import the guest ({_first_line(err)}); use the"
            " Python the project is installed with"
        )
    if isinstance(exc, OSError):
        return f"cannot start a sandbox worker: {exc.strerror or exc}"
    detail = _first_line(err) or (repr(exc) if exc is not None else "no output")
    return f"the sandbox worker did not start: {detail}"
