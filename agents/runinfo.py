"""A run's fixed facts, read once from its first event."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from agents.config import RunConfig
from events import Event
from events.types import RunStarted
from store.base import EventStore

__all__ = ("OFFLINE_MODEL", "RunInfo", "run_info")

#: The model name requests carry when the offline mutation proposer answers them.
OFFLINE_MODEL = "offline-mutation"


@dataclass(frozen=True)
class RunInfo:
    root: Event
    command: str
    seed: int
    config: RunConfig
    options: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.config.lm.get("model") or OFFLINE_MODEL)


#: Per store object (weakly held, so a new store never sees another's entries), per run.
_CACHE: weakref.WeakKeyDictionary[EventStore, dict[str, RunInfo]] = weakref.WeakKeyDictionary()


async def run_info(store: EventStore, run_id: str) -> RunInfo:
    """The run's first event, decoded once per store; a run's root never changes."""
    cache = _CACHE.setdefault(store, {})
    if run_id not in cache:
        first = await store.read(run_id, limit=1)
        if not first or first[0].type != RunStarted.TYPE:
            raise LookupError(f"run {run_id} has no run.started event")
        root = first[0]
        started = root.decode(RunStarted)
        cfg = dict(started.config)
        options = cfg.pop("options", {})
        cache[run_id] = RunInfo(root, started.command, started.seed, RunConfig.from_dict(cfg), dict(options))
    return cache[run_id]
