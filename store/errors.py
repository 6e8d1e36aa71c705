"""Store errors, modelled on PEP 249's tree so callers can catch at the depth they mean.

StoreError
├── ConflictError        a different payload under an existing event id / cache key
├── StoreUnavailable     the file cannot be opened or written right now
│   ├── StoreNotFound    no store at that path (and creation was not asked for)
│   ├── StoreReadOnly    the file or its folder is read-only
│   └── StoreFull        the disk is full; nothing was written
├── CorruptStore         not a SQLite file, or a damaged one; nothing is rewritten
│   └── CorruptBlob      a blob whose bytes no longer match their hash
└── SchemaError          not our schema
    ├── ForeignSchema    a SQLite file of some other program
    └── SchemaTooNew     written by a newer version of this code
"""

from __future__ import annotations

import sqlite3

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
    "StoreNotFound",
    "StoreReadOnly",
    "StoreUnavailable",
    "is_busy",
    "map_sqlite_error",
)


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
    """There is no store at the path and creating one was not asked for: exit 2."""

    exit_code = ExitCode.USAGE


class StoreReadOnly(StoreUnavailable):
    """The database file (or its folder, needed for the WAL) is not writable."""


class StoreFull(StoreUnavailable):
    """The disk is full. The transaction was rolled back; earlier events are intact."""


class CorruptStore(StoreError, UsageError):
    """The file is not a SQLite database, or SQLite reports it damaged: exit 2."""

    exit_code = ExitCode.USAGE


class CorruptBlob(CorruptStore):
    """A blob's bytes do not hash to its address: it was changed after it was stored."""


class SchemaError(StoreError, UsageError):
    """The database does not hold this project's schema at a version this code reads: exit 2."""

    exit_code = ExitCode.USAGE


class ForeignSchema(SchemaError):
    """A SQLite file written by some other program."""


class SchemaTooNew(SchemaError):
    """Written by a newer version of this code; upgrading the code is the fix: exit 3."""

    exit_code = ExitCode.ENVIRONMENT


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def map_sqlite_error(exc: sqlite3.Error, path: str) -> StoreError:
    """The most specific store error for a sqlite3 error (chain it with ``from exc``)."""
    msg = str(exc).lower()
    if "readonly" in msg or "read-only" in msg:
        return StoreReadOnly(f"store {path} is read-only: {exc}")
    if "full" in msg:
        return StoreFull(f"disk full while writing {path}; nothing was written: {exc}")
    if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
        return CorruptStore(f"{path} is not a readable STOP store ({exc}); it was not modified")
    if "unable to open" in msg:
        return StoreUnavailable(f"cannot open store {path}: {exc}")
    if is_busy(exc):
        return StoreUnavailable(f"store {path} stayed locked by another process: {exc}")
    return StoreError(f"store {path}: {exc}")
