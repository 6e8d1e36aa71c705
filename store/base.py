"""The store interface: small enough for a server database to implement too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from events.model import Event

__all__ = ("CacheEntry", "EventStore", "blob_bytes")


@dataclass(frozen=True)
class CacheEntry:
    """One LM cache row: ``key`` (sha256 of the canonical request + sample ordinal) -> record."""

    key: str
    value: dict[str, Any]


def blob_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


class EventStore(Protocol):
    """Append-only event log with content-addressed blobs and the LM cache.

    Every append is one transaction: the events (chained onto their runs), the blobs and the
    cache rows land together or not at all. Re-appending an event whose id exists with the same
    content returns the stored event (idempotent); a different content raises ``ConflictError``.
    """

    async def append(
        self,
        events: Sequence[Event],
        *,
        blobs: Sequence[bytes | str] = (),
        cache: Sequence[CacheEntry] = (),
    ) -> list[Event]: ...

    async def start_run(self, prefix: str, make_root: Callable[[str], Event]) -> Event:
        """Append a new run's first event, ``make_root(run_id)``, under the first free id
        ``PREFIX-N`` (``store.planning.next_run_id``), choosing the id and appending in one
        transaction: two processes starting runs at once never share an id."""
        ...

    async def read(
        self,
        run_id: str | None = None,
        *,
        after: int = 0,
        limit: int | None = None,
        types: Collection[str] | None = None,
    ) -> list[Event]: ...

    async def get(self, event_id: str) -> Event | None: ...

    async def head(self, run_id: str) -> Event | None: ...

    async def children(self, causation_id: str, types: Collection[str] | None = None) -> list[Event]:
        """The events a given event caused, in log order (how agents find an answer)."""
        ...

    async def last_seq(self) -> int: ...

    async def run_ids(self) -> list[str]: ...

    def subscribe(
        self,
        run_id: str | None = None,
        *,
        after: int = 0,
        types: Collection[str] | None = None,
    ) -> AsyncIterator[Event]: ...

    async def put_blob(self, data: bytes | str) -> str: ...

    async def get_blob(self, digest: str) -> bytes: ...

    async def cache_get(self, key: str) -> dict[str, Any] | None: ...

    async def cache_rows(self) -> list[CacheEntry]:
        """Every LM cache row, ordered by key (the audit checks each against its event)."""
        ...

    async def cache_put(self, key: str, value: dict[str, Any]) -> None: ...

    async def aclose(self) -> None: ...
