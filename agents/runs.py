"""What one agent context remembers of the runs it serves: a projection of the log it owns.

Per run: its fixed facts (``RunInfo``, read once from its root), the workflows' incremental
view (``RunView``), and, for a fork, the source's verified prefix. Each ``AgentContext`` has its
own ``RunMemory`` bound to its store, so two runs, two stores or two contexts in one process
never share these by accident; nothing here is a module global. Everything is derived from the
log, so a fresh memory rebuilds the same state by reading it again.
"""

from __future__ import annotations

from typing import Any

from agents.fork import ForkPrefix, fork_source, read_fork_prefix
from agents.run_view import RunView
from agents.runinfo import RunInfo, run_info
from store.base import EventStore

__all__ = ("RunMemory",)


class RunMemory:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._infos: dict[str, RunInfo] = {}
        self._views: dict[str, RunView] = {}
        self._forks: dict[tuple[str, int], ForkPrefix] = {}

    async def info(self, run_id: str) -> RunInfo:
        """The run's fixed facts, read from the store the first time (a run's root never changes)."""
        if run_id not in self._infos:
            self._infos[run_id] = await run_info(self.store, run_id)
        return self._infos[run_id]

    def view(self, run_id: str) -> RunView:
        """The workflows' view of the run (empty until its first ``refresh``)."""
        return self._views.setdefault(run_id, RunView())

    async def refreshed_view(self, run_id: str) -> RunView:
        """The view, caught up with everything the log holds now."""
        view = self.view(run_id)
        await view.refresh(self.store, run_id)
        return view

    async def fork_prefix(self, options: dict[str, Any]) -> ForkPrefix | None:
        """A fork's shared prefix, read and verified once per (source, cut); None for no fork."""
        source = fork_source(options)
        if source is None:
            return None
        if source not in self._forks:
            self._forks[source] = await read_fork_prefix(self.store, *source)
        return self._forks[source]
