"""The store a replay writes into: in memory, reading blobs through to the recorded log."""

from __future__ import annotations

from store import MemoryStore, StoreError
from store.base import EventStore

__all__ = ("ReplayStore",)


class ReplayStore(MemoryStore):
    """Programs and replies the replayed run did not write itself (e.g. an improver from an
    earlier run named by ``--improver``) are read from the recorded log."""

    def __init__(self, recorded: EventStore) -> None:
        super().__init__()
        self._recorded = recorded

    async def get_blob(self, digest: str) -> bytes:
        try:
            return await super().get_blob(digest)
        except StoreError:
            return await self._recorded.get_blob(digest)
