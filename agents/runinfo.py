"""A run's fixed facts, read from its first event.

``run_info`` reads them from the store every call; an agent asks its context instead
(``ctx.runs.info(run_id)``, ``agents.runs``), which reads them once per run.
"""

from __future__ import annotations

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


async def run_info(store: EventStore, run_id: str) -> RunInfo:
    """The run's first event, decoded (one store read; nothing is remembered here)."""
    first = await store.read(run_id, limit=1)
    if not first or first[0].type != RunStarted.TYPE:
        raise LookupError(f"run {run_id} has no run.started event")
    root = first[0]
    started = root.decode(RunStarted)
    cfg = dict(started.config)
    options = cfg.pop("options", {})
    return RunInfo(root, started.command, started.seed, RunConfig.from_dict(cfg), dict(options))
