"""Store errors, modelled on PEP 249's tree so callers can catch at the depth they mean.

StoreError
├── ConflictError        a different payload under an existing event id / cache key
├── StoreUnavailable     the file cannot be opened or written right now    (exit 3)
│   ├── StoreNotFound    no store at that path, or an empty file            (exit 2)
│   ├── StoreReadOnly    the file or its folder is read-only
│   ├── StoreFull        the disk is full; nothing was written
│   └── StoreIOError     the disk reported an I/O error; nothing was written
├── CorruptStore         not a SQLite file, or a damaged one; nothing is rewritten
│   └── CorruptBlob      a blob whose bytes no longer match their hash
└── SchemaError          not our schema
    ├── ForeignSchema    a SQLite file of some other program
    └── SchemaTooNew     written by a newer version of this code

Every store error is an ``outcome.StopError`` (``EnvironmentProblem``, exit 3, unless a class
says otherwise): the CLI prints it as one line and exits with its code. A write that fails this way was rolled back as a
whole, so what the log held before is intact and a run can be resumed once the cause is fixed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from typing import ClassVar

from outcome import EnvironmentProblem, ExitCode, UsageError

__all__ = (
    "ConflictError",
    "CorruptBlob",
    "CorruptStore",
    "ForeignSchema",
    "SchemaError",
    "SchemaTooNew",
    "StoreError",
    "StoreFull",
    "StoreIOError",
    "StoreNotFound",
    "StoreReadOnly",
    "StoreUnavailable",
    "free_bytes",
    "is_busy",
    "map_sqlite_error",
)

#: Below this many free bytes an I/O error while writing is taken for a full disk.
_NEARLY_FULL = 1 << 20


class StoreError(EnvironmentProblem):
    """Base of every error the store raises.

    Each is an ``outcome`` error, so the CLI prints it as one line with the contract's exit code:
    3 (the store cannot be used here) unless a subclass says otherwise.
    """


class ConflictError(StoreError):
    """An append or cache put would change something already recorded."""


class StoreUnavailable(StoreError):
    """The store cannot be used right now (locked past the retries, unopenable): exit 3."""


class StoreNotFound(StoreUnavailable, UsageError):
    """There is no store at the path (or only an empty file) and creating one was not asked for: exit 2."""

    exit_code: ClassVar[ExitCode] = ExitCode.USAGE


class StoreReadOnly(StoreUnavailable):
    """The database file (or its folder, needed for the WAL) is not writable."""


class _WriteFailed(StoreUnavailable):
    """A write failed for a reason of the machine; the transaction was rolled back whole."""

    what: ClassVar[str] = "write failed"
    todo: ClassVar[str] = "fix it"

    def __init__(self, path: str, detail: str = "", *, run_id: str | None = None) -> None:
        self.path = path
        self.detail = detail
        self.run_id = run_id
        self.free = free_bytes(path)
        super().__init__(self._text())

    def _text(self) -> str:
        free = f"{self.free} bytes free" if self.free is not None else "free space unknown"
        run = self.run_id or "RUN"
        return f"{self.what} at {self.path}: {free}; nothing recorded was lost; {self.todo} and run `stop resume {run}`"

    def for_run(self, run_id: str) -> _WriteFailed:
        """The same error naming the run to resume."""
        if self.run_id is None:
            self.run_id = run_id
            self.message = self._text()
            self.args = (self.message,)
        return self


class StoreFull(_WriteFailed):
    """The disk is full. The transaction was rolled back; earlier events are intact."""

    what = "disk full"
    todo = "free space"


class StoreIOError(_WriteFailed):
    """The disk reported an I/O error. The transaction was rolled back; earlier events are intact."""

    what = "disk I/O error"
    todo = "check the disk"


class CorruptStore(StoreError, UsageError):
    """The file is not a SQLite database, or SQLite reports it damaged: exit 2."""

    exit_code: ClassVar[ExitCode] = ExitCode.USAGE


class CorruptBlob(CorruptStore):
    """A blob's bytes do not hash to its address: it was changed after it was stored."""


class SchemaError(StoreError, UsageError):
    """The database does not hold this project's schema at a version this code reads: exit 2."""

    exit_code: ClassVar[ExitCode] = ExitCode.USAGE


class ForeignSchema(SchemaError):
    """A SQLite file written by some other program."""


class SchemaTooNew(SchemaError):
    """Written by a newer version of this code; upgrading the code is the fix: exit 3."""

    exit_code: ClassVar[ExitCode] = ExitCode.ENVIRONMENT


def free_bytes(path: str) -> int | None:
    """Free bytes on the file system holding ``path`` (None if it cannot be asked)."""
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path)) or ".").free
    except OSError:
        return None


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def map_sqlite_error(exc: sqlite3.Error, path: str) -> StoreError:
    """The most specific store error for a sqlite3 error (chain it with ``from exc``)."""
    msg = str(exc).lower()
    code = _primary_code(exc)
    if code == sqlite3.SQLITE_READONLY or "readonly" in msg or "read-only" in msg:
        return StoreReadOnly(f"store {path} is read-only ({exc}); open it from a writable place or copy it")
    if code == sqlite3.SQLITE_FULL or "full" in msg:
        return StoreFull(path, str(exc))
    if code == sqlite3.SQLITE_IOERR or "disk i/o error" in msg:
        free = free_bytes(path)
        if free is not None and free < _NEARLY_FULL:
            return StoreFull(path, str(exc))
        return StoreIOError(path, str(exc))
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT) or (
        "not a database" in msg or "malformed" in msg or "corrupt" in msg
    ):
        return CorruptStore(f"{path} is not a readable STOP store ({exc}); it was not modified")
    if code == sqlite3.SQLITE_CANTOPEN or "unable to open" in msg:
        folder = os.path.dirname(os.path.abspath(path)) or "."
        if os.path.isdir(folder) and not os.access(folder, os.W_OK):
            return StoreReadOnly(
                f"store {path} is in a read-only folder ({folder}): writing needs the file and its"
                " journal beside it; use a --store in a writable place (read commands work here)"
            )
        return StoreUnavailable(f"cannot open store {path}: {exc}")
    if is_busy(exc):
        return StoreUnavailable(f"store {path} stayed locked by another process: {exc}")
    return StoreError(f"store {path}: {exc}")
