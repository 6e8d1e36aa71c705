"""Forks: a new run that shares a recorded run's prefix and goes on differently from an event.

A fork records its source and cut point in its options. Its LM requests whose causal position
(the path of ``type:key`` steps from the root) the source asked at or before the cut are asked
exactly as the source asked them (same model), so the cache serves the recorded answers; every
later request uses the fork's own model and config. ``stop diff`` then shows where they part.
"""

from __future__ import annotations

from typing import Any

from events import Event
from events.stop_events import LMRequested, LMResponded
from outcome import RunFailed
from replay.cache_check import cache_row_problem
from store.base import EventStore
from store.causation import ancestors_in

__all__ = ("ForkPrefix", "fork_prefix", "fork_source", "read_fork_prefix", "verify_fork_source")


class ForkPrefix:
    def __init__(self, requests: dict[str, dict[str, Any]]) -> None:
        self._requests = requests

    def recorded_request(self, path: str) -> dict[str, Any] | None:
        """The source's request at this causal path, if it was asked before the cut."""
        return self._requests.get(path)


def _paths(events: list[Event]) -> dict[str, str]:
    by_id = {e.id: e for e in events}
    out: dict[str, str] = {}
    for ev in events:
        steps = [f"{e.type}:{e.key}" for e in (ev, *ancestors_in(by_id, ev))]
        out[ev.id] = "/".join(reversed(steps))
    return out


def fork_source(options: dict[str, Any]) -> tuple[str, int] | None:
    """(source run, cut sequence number) of a fork's options; None for a run that is no fork."""
    fork = options.get("fork")
    return (str(fork["run"]), int(fork["at_seq"])) if fork else None


async def fork_prefix(store: EventStore, options: dict[str, Any]) -> ForkPrefix | None:
    """The source's requests up to the cut, read and verified from the store on every call (an
    agent asks its context instead, ``ctx.runs.fork_prefix``, which does it once per fork)."""
    source = fork_source(options)
    return None if source is None else await read_fork_prefix(store, *source)


async def read_fork_prefix(store: EventStore, run_id: str, at_seq: int) -> ForkPrefix:
    """The requests ``run_id`` asked at or before ``at_seq``, by causal path, once verified."""
    events = await store.read(run_id)
    await _verify(store, run_id, events, at_seq)
    paths = _paths(events)
    return ForkPrefix(
        {paths[e.id]: e.decode(LMRequested).request for e in events if e.is_a(LMRequested) and (e.seq or 0) <= at_seq}
    )


async def _verify(store: EventStore, run_id: str, events: list[Event], at_seq: int) -> None:
    by_id = {e.id: e for e in events}
    for ev in events:
        cause = by_id.get(ev.causation_id or "")
        if not ev.is_a(LMResponded) or cause is None or (cause.seq or 0) > at_seq:
            continue
        record = await store.cache_get(ev.decode(LMResponded).cache_key)
        problem = None if record is None else cache_row_problem(cause, ev, record)
        if problem is not None:
            raise RunFailed(
                f"refusing to fork run {run_id}: {problem} (answer {ev.id}); the store was changed after it was"
                " recorded, so the fork would reuse answers the source never got",
                hint=f"stop audit {run_id} lists every altered row",
            )


async def verify_fork_source(store: EventStore, run_id: str, at_seq: int) -> None:
    """Refuse (``RunFailed``) a fork whose shared prefix holds an LM cache row that does not
    match the event that recorded it."""
    await _verify(store, run_id, await store.read(run_id), at_seq)
