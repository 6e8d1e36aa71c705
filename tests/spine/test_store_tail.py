"""The shared tail (``store.tail``): subscribers served from memory see exactly the log.

Every test compares what subscribers (and ``get``) hand out with a read of the database through
another connection, field by field, the stored form included: an event from memory must not be
told apart from one read from the database.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from events import Event, event_id, make_event, payload, upcaster
from events.registry import Payload
from events.types import Note, RunStarted
from store import MemoryStore, PostgresStore, SqliteStore
from store.base import EventStore

Opener = Callable[..., Awaitable[Any]]


@payload("test.tail_widget", version=2)
class Widget(Payload):
    name: str
    size_mm: int


@upcaster("test.tail_widget", 1)
def _widget_v1_to_v2(data: dict) -> dict:
    data["size_mm"] = data.pop("size_cm") * 10
    return data


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return _opener(kind, request, tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Openers of the stores several processes share."""
    return _opener(str(request.param), request, tmp_path)


def _opener(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """``await opener(**options)`` opens a store on one log (the same log every call, so a
    second call is another connection to it); memory has one store only."""
    if kind == "memory":
        only: list[MemoryStore] = []

        async def memory(tail_capacity: int = 4096, **_: object) -> MemoryStore:
            if not only:
                only.append(MemoryStore(tail_capacity=tail_capacity))
            return only[0]

        return memory
    if kind == "sqlite":

        async def sqlite(**options: Any) -> SqliteStore:
            return await SqliteStore.open(tmp_path / "log.db", synchronous="OFF", poll_seconds=0.02, **options)

        return sqlite
    server = request.getfixturevalue("pg_server")
    url: list[str] = []

    async def postgres(**options: Any) -> PostgresStore:
        if not url:
            url.append(await server.fresh_url())
        return await PostgresStore.open(url[0], poll_seconds=0.05, **options)

    return postgres


def _full(ev: Event) -> tuple[Any, ...]:
    """Everything an event carries, the stored form and field types included."""
    stored = None if ev.stored_as is None else (ev.stored_as.version, repr(ev.stored_as.payload))
    return (
        ev.seq,
        ev.id,
        ev.run_id,
        ev.type,
        ev.version,
        ev.causation_id,
        ev.key,
        repr(ev.payload),
        ev.prev_hash,
        ev.hash,
        stored,
    )


def _batch(run_id: str, tag: str, n: int, *, root: bool = False) -> list[Event]:
    head = make_event(run_id, RunStarted("t", 0, {}, {}), cause=None, key=0)
    out = [head] if root else []
    for i in range(n):
        if i % 5 == 4:  # an old version, handed out upcast with its stored form kept
            out.append(
                Event(
                    id=event_id(run_id, head.id, "test.tail_widget", f"{tag}/{i}"),
                    run_id=run_id,
                    type="test.tail_widget",
                    version=1,
                    causation_id=head.id,
                    key=f"{tag}/{i}",
                    payload={"name": tag, "size_cm": i},
                )
            )
        else:
            out.append(make_event(run_id, Note(tag, {"i": i, "f": i / 4}), cause=head, key=f"{tag}/{i}"))
    return out


async def _reference(opener: Opener, kind: str, s: EventStore) -> EventStore:
    """A store reading the same log through its own connection (memory: the store itself)."""
    return s if kind == "memory" else await opener()


async def _window_matches_log(s: EventStore, ref: EventStore) -> None:
    tail = s._tail  # type: ignore[attr-defined]
    held = [tail._serve(e) for e in tail._events]
    assert [e.seq for e in held] == list(range(tail.start, tail.end + 1))
    from_db = await ref.read(after=tail.start - 1, limit=len(held)) if held else []
    assert [_full(e) for e in held] == [_full(e) for e in from_db]


async def _collect(s: EventStore, into: list[Event], n: int, **sub: Any) -> None:
    it: AsyncIterator[Event] = s.subscribe(**sub)
    async for ev in it:
        into.append(ev)
        if len(into) >= n:
            return


@pytest.mark.anyio
@pytest.mark.parametrize("listen", [True, False])
async def test_appends_by_another_connection_reach_subscribers(durable: Opener, listen: bool) -> None:
    """Another process's appends are found by the poll (PostgreSQL: also by notification, or
    without them), and a local append landing after them reads the gap first, so the window
    stays the log. (SQLite has no notifications: both runs poll.)"""
    opts = {"listen": listen} if durable.__name__ == "postgres" else {}
    a = await durable(**opts)
    b = await durable(**opts)
    mine = _batch("r", "a", 6, root=True)
    theirs = [_batch("r", f"b{i}", 5) for i in range(4)]
    total = len(mine) + sum(map(len, theirs)) + 3
    got: list[Event] = []
    notes: list[Event] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_collect, a, got, total)
            tg.start_soon(lambda: _collect(a, notes, 2, run_id="r", types={"test.tail_widget"}, after=7))
            await a.append(mine)
            await b.append(theirs[0])
            await anyio.sleep(0.2)  # seen by the poll only
            await b.append(theirs[1])
            await b.append(theirs[2])
            await a.append(_batch("r", "c", 3))  # lands after a gap the tail has not seen
            await b.append(theirs[3])
    log = await b.read()
    assert [_full(e) for e in got] == [_full(e) for e in log]
    assert [_full(e) for e in notes] == [_full(e) for e in log if e.seq > 7 and e.type == "test.tail_widget"][:2]
    await _window_matches_log(a, b)
    assert a._tail.end >= len(mine) + len(theirs[0]) + len(theirs[1]) + len(theirs[2]) + 3
    await a.aclose()
    await b.aclose()


async def _follow_until_cancelled(s: EventStore, box: list[Event], sub: dict[str, Any]) -> None:
    it: AsyncIterator[Event] = s.subscribe(sub.get("run_id"), after=sub.get("after", 0), types=sub.get("types"))
    async for ev in it:
        box.append(ev)


async def _want(ref: EventStore, sub: dict[str, Any]) -> list[Event]:
    return await ref.read(sub.get("run_id"), after=sub.get("after", 0), types=sub.get("types"))


async def _caught_up(ref: EventStore, subs: list[tuple[dict[str, Any], list[Event]]]) -> None:
    """Wait until every subscriber has as many events as a read of the log gives it."""
    with anyio.fail_after(30):
        for sub, box in subs:
            n = len(await _want(ref, sub))
            while len(box) < n:  # noqa: ASYNC110 - the boxes are plain lists the followers fill
                await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_subscriber_far_behind_the_window_catches_up_in_order(opener: Opener, kind: str) -> None:
    s = await opener(tail_capacity=8)
    ref = await _reference(opener, kind, s)
    await s.append(_batch("ra", "x", 0, root=True) + _batch("rb", "x", 0, root=True))
    for i in range(30):
        await s.append(_batch("ra" if i % 3 else "rb", f"p{i}", 7))
    assert s._tail.start > 100  # the early log is only in the database now
    subs: list[tuple[dict[str, Any], list[Event]]] = [
        ({}, []),
        ({"run_id": "rb"}, []),
        ({"types": {"test.tail_widget"}, "after": 50}, []),
        ({"run_id": "ra", "types": {"note"}, "after": 3}, []),
    ]
    async with anyio.create_task_group() as tg:
        for sub, box in subs:
            tg.start_soon(_follow_until_cancelled, s, box, sub)
        for i in range(10):
            await s.append(_batch("ra" if i % 2 else "rb", f"q{i}", 7))
            await anyio.lowlevel.checkpoint()
        await _caught_up(ref, subs)
        tg.cancel_scope.cancel()
    assert await ref.last_seq() == 2 + 40 * 7
    for sub, box in subs:
        assert [_full(e) for e in box] == [_full(e) for e in await _want(ref, sub)], sub
    await _window_matches_log(s, ref)
    if ref is not s:
        await ref.aclose()
    await s.aclose()


RUNS: list[str | None] = [None, "ra", "rb"]
TYPES: list[Collection[str] | None] = [None, {"note"}, {"run.started"}, {"note", "test.tail_widget"}, ["nothing"]]


@pytest.mark.anyio
async def test_many_subscribers_with_filters_see_what_a_read_gives(opener: Opener, kind: str) -> None:
    s = await opener(tail_capacity=64)
    ref = await _reference(opener, kind, s)
    batches = [_batch("ra", "r0", 2, root=True), _batch("rb", "r0", 1, root=True)]
    batches += [_batch("ra" if i % 3 else "rb", f"n{i}", 1 + i % 6) for i in range(40)]
    subs: list[tuple[dict[str, Any], list[Event]]] = []
    async with anyio.create_task_group() as tg:
        for i, batch in enumerate(batches):
            if i % 10 == 0:  # subscribers start at different moments, some behind the head
                head = await s.last_seq()
                for run_id in RUNS:
                    for types in TYPES:
                        sub = {"run_id": run_id, "types": types, "after": (i * 7 + len(subs)) % (head + 1)}
                        subs.append((sub, []))
                        tg.start_soon(_follow_until_cancelled, s, subs[-1][1], sub)
            await s.append(batch)
        await _caught_up(ref, subs)
        tg.cancel_scope.cancel()
    assert len(subs) == 5 * len(RUNS) * len(TYPES)
    for sub, box in subs:
        assert [_full(e) for e in box] == [_full(e) for e in await _want(ref, sub)], sub
    for e in (await ref.read())[-20:]:
        got = await s.get(e.id)
        assert got is not None and _full(got) == _full(e)
    await _window_matches_log(s, ref)
    if ref is not s:
        await ref.aclose()
    await s.aclose()


@pytest.mark.anyio
async def test_cancelled_appends_leave_the_window_the_log(durable: Opener) -> None:
    """An append cancelled at any moment either committed (and is in the window, in order) or
    did not (and is not); a subscriber sees every committed event once. (A memory append has
    no moment to be cancelled at.)"""
    s = await durable(tail_capacity=32)
    ref = await durable()
    await s.append(_batch("r", "root", 0, root=True))
    t0 = time.perf_counter()
    await s.append(_batch("r", "timing", 20))
    took = time.perf_counter() - t0
    got: list[Event] = []
    cancelled = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _collect(s, got, 10**9))
        for i in range(30):
            with anyio.move_on_after(took * 1.5 * i / 30) as scope:
                await s.append(_batch("r", f"c{i}", 20))
            cancelled += scope.cancel_called  # the deadline passed during the append
            await _window_matches_log(s, ref)
            if i % 7 == 3:  # another connection's append: a gap for the next local one
                await ref.append(_batch("r", f"o{i}", 2))
        await s.append([make_event("r", Note("last", {}), cause=None, key="last")])
        with anyio.fail_after(10):
            while not got or got[-1].seq != await ref.last_seq():  # noqa: ASYNC110 - as above
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert cancelled > 0
    log = await ref.read()
    assert [_full(e) for e in got] == [_full(e) for e in log]
    await _window_matches_log(s, ref)
    await ref.aclose()
    await s.aclose()


@pytest.mark.anyio
async def test_children_and_last_seq_answered_from_the_tail_are_the_log(durable: Opener) -> None:
    """``children`` and ``last_seq`` may come from memory (SQLite, while no other connection
    has committed): a child appended by another connection is seen at once, and so is a child
    appended before its cause (the window cannot prove those; the database answers)."""
    a = await durable(tail_capacity=8)
    b = await durable()
    root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
    x = make_event("r", Note("x", {}), cause=root, key="x")
    early = make_event("r", Note("early", {}), cause=x, key="early")  # names x before x exists
    y = make_event("r", Note("y", {}), cause=root, key="y")
    late = make_event("r", Note("before-y", {}), cause=y, key="late")
    await a.append([root])
    await a.append([early])
    await a.append([make_event("r", Note("pad", {"i": i}), cause=root, key=f"pad{i}") for i in range(20)])
    assert a._tail.start > 2  # ``early`` is in the database only
    await a.append([x])
    await a.append([late, y])  # in one batch, the child first
    kids = [make_event("r", Note(f"k{i}", {}), cause=x, key=f"k{i}") for i in range(5)]
    await a.append(kids[:2])

    async def same(cause: Event, types: set[str] | None = None) -> None:
        assert [_full(e) for e in await a.children(cause.id, types)] == [
            _full(e) for e in await b.children(cause.id, types)
        ]
        assert await a.last_seq() == await b.last_seq()

    await same(x)
    assert [e.id for e in await a.children(x.id)] == [early.id, kids[0].id, kids[1].id]
    assert [e.id for e in await a.children(y.id)] == [late.id]
    await same(root, {"note"})
    await b.append(kids[2:4])  # another connection: a's tail no longer ends at the head
    await same(x)
    assert len(await a.children(x.id)) == 5
    await a.append(kids[4:])  # the gap is read first; the tail is the head again
    await same(x)
    await same(x, {"run.started"})
    for i in range(3):  # x leaves the window: the database answers
        await a.append([make_event("r", Note(f"f{i}", {}), cause=root, key=f"f{i}")])
    await a.append([make_event("r", Note("f", {"i": i}), cause=root, key=f"g{i}") for i in range(20)])
    await same(x)
    await same(root)
    await a.aclose()
    await b.aclose()
