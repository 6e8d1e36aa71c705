"""Following a log: the subscription loop both stores share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection

import anyio

from events.model import Event

__all__ = ("follow",)

Reader = Callable[..., Awaitable[list[Event]]]


async def follow(
    read: Reader,
    last_seq: Callable[[], Awaitable[int]],
    wakeup: Callable[[], anyio.Event],
    *,
    run_id: str | None,
    after: int,
    types: Collection[str] | None,
    poll_s: float | None,
    page: int = 1000,
) -> AsyncIterator[Event]:
    """Events after ``after`` in log order, then new ones as they come.

    ``wakeup()`` is the event the next local append sets (taken before reading, so an append
    during the read is not missed); ``poll_s`` bounds the wait for appends by other processes
    (None: only local appends exist). Events up to the head seen before a short read have all
    been read, so a filtered subscription never scans the same non-matching events twice.
    """
    last = after
    while True:
        waiter = wakeup()
        head = await last_seq()
        batch = await read(run_id, after=last, types=types, limit=page)
        for ev in batch:
            yield ev
            last = ev.seq or last
        if len(batch) < page:
            last = max(last, head)
            if poll_s is None:
                await waiter.wait()
            else:
                with anyio.move_on_after(poll_s):
                    await waiter.wait()
