"""One way to open a store from what a user typed: a PostgreSQL URL or a SQLite path."""

from __future__ import annotations

import os

from store.postgres import PostgresStore, is_postgres_url, redact_url
from store.sqlite import SqliteStore

__all__ = ("DurableStore", "describe_store", "open_store")

#: What ``open_store`` returns: either durable store (both are async context managers).
DurableStore = SqliteStore | PostgresStore


async def open_store(target: str | os.PathLike[str], *, create: bool = True, readonly: bool = False) -> DurableStore:
    """``postgresql://user@host[:port]/db`` (password from ``PGPASSWORD`` or ``~/.pgpass``; a URL
    holding one is refused) opens the shared PostgreSQL store; anything else is a SQLite file."""
    text = os.fspath(target)
    if is_postgres_url(text):
        return await PostgresStore.open(text, create=create, readonly=readonly)
    return await SqliteStore.open(text, create=create and not readonly, readonly=readonly)


def describe_store(target: str | os.PathLike[str]) -> str:
    """How to name a store in messages and recorded events (never a password)."""
    text = os.fspath(target)
    return redact_url(text) if is_postgres_url(text) else text
