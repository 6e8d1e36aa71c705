"""A run's fixed facts, read once from its first event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.config import RunConfig
from events import Event
from store.base import EventStore

__all__ = ("RunInfo", "run_info", "OFFLINE_MODEL")

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


_CACHE: dict[tuple[int, str], RunInfo] = {}


async def run_info(store: EventStore, run_id: str) -> RunInfo:
    key = (id(store), run_id)
    if key not in _CACHE:
        first = await store.read(run_id, limit=1)
        if not first or first[0].type != "run.started":
            raise LookupError(f"run {run_id} has no run.started event")
        root = first[0]
        cfg = dict(root.payload["config"])
        options = cfg.pop("options", {})
        _CACHE[key] = RunInfo(root, root.payload["command"], int(root.payload["seed"]),
                              RunConfig.from_dict(cfg), dict(options))
    return _CACHE[key]
