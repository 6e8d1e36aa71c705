"""A store's shared tail: its newest committed events, held in memory for every subscriber.

Without it each subscriber asked the database for ``last_seq`` and a page of events after every
local append (two calls per subscriber per append, each a thread hop for SQLite). The tail holds
the events the store has committed itself and those it has read past its end, in a bounded
window of consecutive sequence numbers ``[start, end]``: for those numbers it is exactly the log
(sequence numbers are unique, and committed ones form a prefix of 1, 2, ... in both durable
stores, so a read of ``seq > end`` gives the next events, with no holes). What it cannot know
by itself is whether another process has committed past ``end``; the store's poll (one per
store, shared by its subscribers) reads that, and a local append that lands past a gap first
reads the gap (``record``), so the window stays contiguous.

The events are built exactly as a database read builds them (the store's row decoder), so a
subscriber cannot tell whether an event came from memory or from the database; they are
shared, immutable ``Event`` objects, as ``MemoryStore`` has always handed out.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Collection, Sequence

import anyio
import structlog

from events.model import Event

__all__ = ("DEFAULT_CAPACITY", "POLL_PAGE", "Tail")

log = structlog.get_logger("store")

#: Events kept by default: a generation's worth of fan-out, a few MB at most.
DEFAULT_CAPACITY = 4096

#: The most events one poll reads (a full page means more may be waiting: poll again at once).
POLL_PAGE = 1000

#: ``fill(after, below)``: the committed events with ``after < seq < below``, in order.
Fill = Callable[[int, int], Awaitable[list[Event]]]


class Tail:
    """The window of consecutive committed events ``[start, end]`` (empty: ``start == end + 1``).

    Only the owning store changes it, and only with events that have committed; ``tick`` is
    set (and replaced) whenever it grows, which is what wakes the store's subscribers."""

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, *, head: int = 0, as_read: Callable[[Event], Event] | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError("a tail holds at least one event")
        self.capacity = capacity
        #: Builds an event as a database read gives it from the row an append inserted; run
        #: only for events handed out (an append of many events nobody follows costs nothing).
        self._as_read = as_read
        self._read: dict[str, Event] = {}
        self._events: list[Event] = []
        self._first = head + 1
        self._by_id: dict[str, Event] = {}
        self._by_cause: dict[str, list[Event]] = {}
        #: Ids of held events known to have no child earlier in the log (see ``children``).
        self._proven: set[str] = set()
        self._known_head = head
        self._more = False
        self._notes = 0
        self._polling: anyio.Event | None = None
        self._polled_at = -math.inf
        self.tick = anyio.Event()
        #: Events handed to subscribers from memory, and polls made (for the benchmarks).
        self.served = 0
        self.polls = 0

    @property
    def start(self) -> int:
        return self._first

    @property
    def end(self) -> int:
        return self._first + len(self._events) - 1

    @property
    def behind(self) -> bool:
        """Whether events past ``end`` are known to be committed (a notification said so, or
        the last poll filled a whole page): the next wait polls at once."""
        return self._more or self._known_head > self.end

    def reset(self, head: int) -> None:
        """An empty window just after ``head`` (the log's last seq when the store opened)."""
        self._set([], head + 1)

    def note_head(self, seq: int) -> None:
        """Another writer committed up to ``seq`` (e.g. a PostgreSQL notification)."""
        if seq > self._known_head:
            self._known_head = seq
            self._notes += 1
            if seq > self.end:
                self._wake()

    def add(self, events: Sequence[Event], proven: Collection[str] = (), *, ready: bool = True) -> bool:
        """Take committed events (in seq order, consecutive among themselves). Those at or
        below ``end`` are already known (a poll and an append can both bring one); False,
        with nothing changed, when the rest would leave a gap after ``end``. ``proven``: ids
        among them that had no child in the log before them (``children``). ``ready``: they
        are already as a read gives them (else they are the inserted rows, see ``as_read``)."""
        end = self.end
        fresh = [ev for ev in events if (ev.seq or 0) > end]
        if not fresh:
            return True
        if fresh[0].seq != end + 1:
            return False
        self._events.extend(fresh)
        self._index(fresh, proven, ready)
        self._known_head = max(self._known_head, self.end)
        self._trim()
        self._wake()
        return True

    async def record(self, events: Sequence[Event], fill: Fill, proven: Collection[str] = ()) -> None:
        """Take the events a local append just committed; a gap before them (another
        process's appends) is read with ``fill`` first. If it cannot be (too long, or the
        read fails), the window restarts at these events: whoever is behind it then reads
        the database. Never raises: call it, shielded, right after the commit."""
        if not events or self.add(events, proven, ready=False):
            return
        first = events[0].seq or 0
        if first - 1 - self.end <= self.capacity:
            try:
                gap = await fill(self.end, first)
            except Exception as exc:  # noqa: BLE001 - the window is an optimisation; the log is intact
                log.warning("store.tail_fill_failed", error=str(exc))
            else:
                if self.add(gap) and self.add(events, proven, ready=False):
                    return
        self._set(list(events), first, proven, ready=False)
        self._wake()

    def after(
        self, last: int, run_id: str | None, types: Collection[str] | None, limit: int
    ) -> tuple[list[Event], int]:
        """The matching events after ``last`` (at most ``limit``) and the position reached:
        the seq of the last one when ``limit`` was hit, else ``end`` (all read to there).
        Call only with ``last >= start - 1``."""
        out: list[Event] = []
        pos = last
        i = last + 1 - self._first
        for ev in self._events[i:] if i > 0 else self._events:
            pos = ev.seq or pos
            if (run_id is None or ev.run_id == run_id) and (types is None or ev.type in types):
                out.append(self._serve(ev))
                if len(out) >= limit:
                    self.served += len(out)
                    return out, pos
        self.served += len(out)
        return out, max(last, self.end)

    def get(self, event_id: str) -> Event | None:
        """The event with this id if the window holds it (ids are unique in the log, so it
        is exactly what the database holds); None says nothing about the database."""
        ev = self._by_id.get(event_id)
        return None if ev is None else self._serve(ev)

    def children(self, cause_id: str, types: Collection[str] | None) -> list[Event] | None:
        """The children of a held event, if the window proves them: the cause is held and had
        no child before it (checked by the append that wrote it), so every child of it is
        held or later than ``end``. The caller must know that nothing was committed past
        ``end`` (e.g. SQLite's ``data_version``). None: ask the database."""
        if cause_id not in self._proven:
            return None
        return [self._serve(ev) for ev in self._by_cause.get(cause_id, ()) if types is None or ev.type in types]

    async def wait(
        self, tick: anyio.Event, poll_s: float | None, poll: Callable[[int], Awaitable[list[Event]]]
    ) -> None:
        """Wait for the window to grow past what a subscriber has seen (``tick`` is the one it
        saw). Every ``poll_s`` (None: only local appends exist) the database is asked for
        events after ``end`` by other processes, once per store however many subscribers wait."""
        if poll_s is None:
            await tick.wait()
            return
        if not self.behind:
            with anyio.move_on_after(poll_s):
                await tick.wait()
                return
        await self.refresh(poll, poll_s)

    async def refresh(self, poll: Callable[[int], Awaitable[list[Event]]], min_interval: float = 0.0) -> None:
        """Read the events after ``end`` (``poll(after)``, a page of the unfiltered log) into
        the window. Callers arriving while a poll runs wait for it instead of polling too; one
        that comes within ``min_interval`` of the last poll, with nothing known to be behind,
        does nothing."""
        if self._polling is not None:
            await self._polling.wait()
            return
        if not self.behind and anyio.current_time() - self._polled_at < min_interval:
            return
        done = self._polling = anyio.Event()
        notes = self._notes
        try:
            self.polls += 1
            batch = await poll(self.end)
            if batch and not self.add(batch):  # not after ``end``: the window moved past a gap
                self._set(list(batch), batch[0].seq or 0)
                self._wake()
            self._more = len(batch) >= POLL_PAGE
            if not self._more and self._notes == notes:
                self._known_head = self.end  # the read saw everything committed before it began
        finally:
            self._polled_at = anyio.current_time()
            self._polling = None
            done.set()

    # ---- internals ----------------------------------------------------------------------
    def _set(self, events: list[Event], first: int, proven: Collection[str] = (), *, ready: bool = True) -> None:
        self._events = events
        self._first = first
        self._by_id = {}
        self._by_cause = {}
        self._proven = set()
        self._read = {}
        self._index(events, proven, ready)
        self._known_head = max(self._known_head, self.end)
        self._trim()

    def _serve(self, ev: Event) -> Event:
        """``ev`` as a database read gives it (built once, on first use)."""
        if self._as_read is None:
            return ev
        got = self._read.get(ev.id)
        if got is None:
            got = self._read[ev.id] = self._as_read(ev)
        return got

    def _index(self, events: Sequence[Event], proven: Collection[str], ready: bool) -> None:
        early: set[str] = set()  # causes met after a child of theirs (in the same batch)
        for ev in events:
            cause = ev.causation_id
            if cause is not None:
                self._by_cause.setdefault(cause, []).append(ev)
                if cause not in self._by_id:
                    early.add(cause)
            self._by_id[ev.id] = ev
            if ready and self._as_read is not None:
                self._read[ev.id] = ev
        self._proven.update(i for i in proven if i in self._by_id and i not in early)

    def _trim(self) -> None:
        """Keep at most ``capacity`` events, dropping the oldest (amortised: in halves)."""
        if len(self._events) < 2 * self.capacity:
            return
        drop = len(self._events) - self.capacity
        for ev in self._events[:drop]:  # oldest first: each is the first of its cause's list
            del self._by_id[ev.id]
            self._read.pop(ev.id, None)
            self._proven.discard(ev.id)
            if ev.causation_id is not None:
                kids = self._by_cause[ev.causation_id]
                del kids[0]
                if not kids:
                    del self._by_cause[ev.causation_id]
        del self._events[:drop]
        self._first += drop

    def _wake(self) -> None:
        self.tick.set()
        self.tick = anyio.Event()
