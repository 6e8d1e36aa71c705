"""Following a log: the subscription loop every store shares, served from its ``Tail``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection

from events.model import Event
from store.tail import Tail

__all__ = ("follow",)

#: ``read_below(run_id, after=, below=, types=, limit=)``: matching events with after < seq < below.
BelowReader = Callable[..., Awaitable[list[Event]]]
#: ``poll(after)``: a page of the unfiltered log after ``after`` (what other processes appended).
Poller = Callable[[int], Awaitable[list[Event]]]


async def follow(
    tail: Tail,
    read_below: BelowReader,
    poll: Poller,
    *,
    run_id: str | None,
    after: int,
    types: Collection[str] | None,
    poll_s: float | None,
    page: int = 1000,
) -> AsyncIterator[Event]:
    """Events after ``after`` in log order, then new ones as they come.

    A subscriber inside the tail's window is served from memory, filtered there; only one
    behind the window reads the database, and only up to where the window starts (everything
    below a committed event has committed, so that read has no holes). Waiting, it wakes on the
    tail's ``tick`` (set by every local append), and every ``poll_s`` the tail polls for other
    processes' appends, once for all subscribers (None: only local appends exist).
    """
    last = after
    while True:
        tick = tail.tick  # taken before looking, so growth while we look is not missed
        start = tail.start
        if last + 1 < start:
            batch = await read_below(run_id, after=last, below=start, types=types, limit=page)
            for ev in batch:
                yield ev
                last = ev.seq or last
            if len(batch) < page:
                last = max(last, start - 1)
            continue
        batch, pos = tail.after(last, run_id, types, page)
        for ev in batch:
            yield ev
        last = pos
        if len(batch) < page:
            await tail.wait(tick, poll_s, poll)
