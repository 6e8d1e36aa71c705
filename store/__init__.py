"""The append-only event log: interface, SQLite, PostgreSQL and in-memory implementations, projections."""

from store.base import CacheEntry as CacheEntry
from store.base import EventStore as EventStore
from store.errors import ConflictError as ConflictError
from store.errors import CorruptBlob as CorruptBlob
from store.errors import CorruptStore as CorruptStore
from store.errors import ForeignSchema as ForeignSchema
from store.errors import SchemaTooNew as SchemaTooNew
from store.errors import StoreError as StoreError
from store.errors import StoreFull as StoreFull
from store.errors import StoreNotFound as StoreNotFound
from store.errors import StoreReadOnly as StoreReadOnly
from store.errors import StoreUnavailable as StoreUnavailable
from store.factory import describe_store as describe_store
from store.factory import open_store as open_store
from store.memory import MemoryStore as MemoryStore
from store.postgres import PostgresStore as PostgresStore
from store.projection import Projection as Projection
from store.projection import fold as fold
from store.projection import project as project
from store.sqlite import SqliteStore as SqliteStore

__all__ = (
    "CacheEntry",
    "ConflictError",
    "CorruptBlob",
    "CorruptStore",
    "EventStore",
    "ForeignSchema",
    "MemoryStore",
    "PostgresStore",
    "Projection",
    "SchemaTooNew",
    "SqliteStore",
    "StoreError",
    "StoreFull",
    "StoreNotFound",
    "StoreReadOnly",
    "StoreUnavailable",
    "describe_store",
    "fold",
    "open_store",
    "project",
)
