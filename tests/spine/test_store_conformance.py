"""One conformance suite, run against every store implementation."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import Event, event_id, make_event, payload, upcaster, verify_chain
from events.registry import Payload
from events.types import Note, RunStarted
from store import CacheEntry, ConflictError, CorruptBlob, MemoryStore, PostgresStore, SqliteStore, StoreError
from store.base import EventStore

StoreFactory = Callable[[Path], Awaitable[EventStore]]


async def _memory(_: Path) -> EventStore:
    return MemoryStore()


async def _sqlite(tmp: Path) -> EventStore:
    return await SqliteStore.open(tmp / "log.db", synchronous="OFF")


FACTORIES = {"memory": _memory, "sqlite": _sqlite}
KINDS = [*sorted(FACTORIES), "postgres"]


@pytest.fixture(params=KINDS)
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    """Each call makes a new, empty store of the kind (PostgreSQL: a fresh schema on the
    session's server, see tests/pgserver.py)."""
    if request.param == "postgres":
        server = request.getfixturevalue("pg_server")

        async def _postgres(_: Path) -> EventStore:
            return await PostgresStore.open(await server.fresh_url(), poll_seconds=0.05)

        return _postgres
    return FACTORIES[request.param]


async def _tamper_blob(s: EventStore, digest: str) -> None:
    """Change a stored blob's bytes behind the store's back, as an attacker with the file would."""
    if isinstance(s, MemoryStore):
        s._blobs[digest] = b"tampered"
    elif isinstance(s, SqliteStore):
        await s._conn.execute("UPDATE blobs SET data = ? WHERE hash = ?", (b"tampered", digest))
    elif isinstance(s, PostgresStore):
        await s._pool.execute("UPDATE stop_blobs SET data = $1 WHERE hash = $2", b"tampered", digest)
    else:  # pragma: no cover
        raise AssertionError(type(s))


def _run_events(run_id: str, notes: list[tuple[str, int]]) -> list[Event]:
    root = make_event(run_id, RunStarted("test", 0, {}, {}), cause=None, key=0)
    return [root] + [make_event(run_id, Note(t, {"i": i}), cause=root, key=k) for k, (t, i) in enumerate(notes)]


batches = st.lists(
    st.tuples(st.sampled_from(["ra", "rb", "rc"]), st.lists(st.tuples(st.text(max_size=8), st.integers()), max_size=6)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches)
def test_appends_read_back_identically_and_in_order(make_store: StoreFactory, batches: list) -> None:
    """Any sequence of appends reads back identically, in order, with every chain intact."""

    async def main() -> None:
        with tempfile.TemporaryDirectory() as d:
            s = await make_store(Path(d))
            expected: list[Event] = []
            seen: set[str] = set()
            offsets: dict[str, int] = {}
            for run_id, notes in batches:
                k0 = offsets.get(run_id, 0)
                evs = _run_events(run_id, [(t, i) for t, i in notes])
                evs = [evs[0]] + [
                    make_event(run_id, Note(t, {"i": i}), cause=evs[0], key=k0 + k) for k, (t, i) in enumerate(notes)
                ]
                offsets[run_id] = k0 + len(notes)
                stored = await s.append(evs)
                assert [e.id for e in stored] == [e.id for e in evs]
                for e in stored:
                    if e.id not in seen:
                        seen.add(e.id)
                        expected.append(e)
            got = await s.read()
            assert [e.body() for e in got] == [e.body() for e in expected]
            assert [e.seq for e in got] == list(range(1, len(got) + 1))
            for run_id in {b[0] for b in batches}:
                assert verify_chain(await s.read(run_id)).ok
            await s.aclose()

    anyio.run(main)


@pytest.mark.anyio
async def test_reappend_is_idempotent(make_store: StoreFactory, tmp_path: Path) -> None:
    s = await make_store(tmp_path)
    evs = _run_events("r", [("a", 1), ("b", 2)])
    first = await s.append(evs)
    again = await s.append(evs[1:] + evs[:1])
    assert {e.hash for e in again} == {e.hash for e in first}
    assert len(await s.read()) == 3
    await s.aclose()


@pytest.mark.anyio
async def test_conflicting_reappend_is_rejected_and_log_kept(make_store: StoreFactory, tmp_path: Path) -> None:
    s = await make_store(tmp_path)
    evs = _run_events("r", [("a", 1)])
    await s.append(evs)
    forged = Event(**{**evs[1].body(), "payload": {"text": "a", "data": {"i": 999}}})
    fresh = make_event("r", Note("new", {}), cause=evs[0], key=50)
    with pytest.raises(ConflictError):
        await s.append([fresh, forged])
    got = await s.read()
    assert [e.payload for e in got] == [e.payload for e in evs]  # the whole batch rolled back
    await s.aclose()


@pytest.mark.anyio
async def test_blobs_are_content_addressed_and_checked(make_store: StoreFactory, tmp_path: Path) -> None:
    s = await make_store(tmp_path)
    h1 = await s.put_blob("def algorithm(): pass\n")
    h2 = await s.put_blob(b"def algorithm(): pass\n")
    assert h1 == h2 and len(h1) == 64
    assert await s.get_blob(h1) == b"def algorithm(): pass\n"
    with pytest.raises(StoreError):
        await s.get_blob("0" * 64)
    await _tamper_blob(s, h1)
    with pytest.raises(CorruptBlob):
        await s.get_blob(h1)
    await s.aclose()


@pytest.mark.anyio
async def test_cache_rows_commit_with_their_event(make_store: StoreFactory, tmp_path: Path) -> None:
    s = await make_store(tmp_path)
    evs = _run_events("r", [("reply", 1)])
    await s.append(evs, cache=[CacheEntry("k1", {"text": "hi"})])
    assert await s.cache_get("k1") == {"text": "hi"}
    await s.append(evs, cache=[CacheEntry("k1", {"text": "hi"})])  # identical: no-op
    bad = make_event("r", Note("other", {}), cause=evs[0], key=9)
    with pytest.raises(ConflictError):
        await s.append([bad], cache=[CacheEntry("k1", {"text": "changed"})])
    assert await s.get(bad.id) is None  # neither the event nor the row was written
    assert await s.cache_get("k1") == {"text": "hi"}
    assert await s.cache_get("nope") is None
    await s.aclose()


@pytest.mark.anyio
async def test_subscribe_wakes_on_appends_and_filters(make_store: StoreFactory, tmp_path: Path) -> None:
    s = await make_store(tmp_path)
    evs = _run_events("r", [("a", 1), ("b", 2), ("c", 3)])
    await s.append(evs[:2])
    got: list[Event] = []

    async def consume() -> None:
        it: AsyncIterator[Event] = s.subscribe("r", types={"note"})
        async for ev in it:
            got.append(ev)
            if len(got) == 3:
                return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.01)
            await s.append([make_event("other", Note("x", {}), cause=None, key=0)])
            await s.append(evs[2:])
    assert [e.payload["text"] for e in got] == ["a", "b", "c"]
    await s.aclose()


@pytest.mark.anyio
async def test_head_and_run_ids(make_store: StoreFactory, tmp_path: Path) -> None:
    s = await make_store(tmp_path)
    a = _run_events("a", [("x", 1)])
    b = _run_events("b", [])
    await s.append(a)
    await s.append(b)
    assert await s.run_ids() == ["a", "b"]
    head = await s.head("a")
    assert head is not None and head.id == a[-1].id
    assert await s.head("zzz") is None
    got = await s.get(a[0].id)
    assert got is not None and got.body() == a[0].body()
    await s.aclose()


@pytest.mark.anyio
async def test_children_and_last_seq(make_store: StoreFactory, tmp_path: Path) -> None:
    s = await make_store(tmp_path)
    evs = _run_events("r", [("a", 1), ("b", 2)])
    assert await s.last_seq() == 0
    await s.append(evs)
    kids = await s.children(evs[0].id)
    assert [k.id for k in kids] == [e.id for e in evs[1:]]
    assert await s.children(evs[0].id, types={"run.started"}) == []
    assert await s.children("nobody") == []
    assert await s.last_seq() == 3
    await s.aclose()


@payload("test.gadget", version=2)
class Gadget(Payload):
    name: str
    size_mm: int


@upcaster("test.gadget", 1)
def _gadget_v1_to_v2(data: dict) -> dict:
    data["size_mm"] = data.pop("size_cm") * 10
    return data


@pytest.mark.anyio
async def test_old_versions_are_stored_as_written_and_read_upcast(make_store: StoreFactory, tmp_path: Path) -> None:
    """An event written at version 1 stays version 1 in the log (its hash covers it) and every
    read hands it out upcast to version 2, its stored form kept for the chain and conflicts."""
    s = await make_store(tmp_path)
    root = _run_events("r", [])[0]
    old = Event(
        id=event_id("r", root.id, "test.gadget", "0"),
        run_id="r",
        type="test.gadget",
        version=1,
        causation_id=root.id,
        key="0",
        payload={"name": "g", "size_cm": 3},
    )
    await s.append([root, old])
    (got,) = await s.children(root.id)
    assert got.version == 2 and got.payload == {"name": "g", "size_mm": 30}
    assert got.data == Gadget("g", 30)
    assert got.stored_version == 1 and got.body()["payload"] == {"name": "g", "size_cm": 3}
    assert got.same_content(old)
    for read in (await s.get(old.id), (await s.read("r"))[1], await s.head("r")):
        assert read is not None and read.version == 2 and read.hash == got.hash
    assert verify_chain(await s.read("r")).ok
    assert await s.append([old]) == [got]  # idempotent: the stored v1 is the same content
    assert await s.append([got]) == [got]  # the read (upcast) event is the same content too
    (tmp_path / "other").mkdir()
    other = await make_store(tmp_path / "other")
    root_read = await s.get(root.id)
    assert root_read is not None
    copied = await other.append([root_read, got])  # appended as read: written in its stored form
    assert [e.hash for e in copied] == [root_read.hash, got.hash] and copied[1].version == 2
    assert verify_chain(await other.read("r")).ok
    await other.aclose()
    await s.aclose()


@pytest.mark.anyio
async def test_empty_and_unknown_inputs(make_store: StoreFactory, tmp_path: Path) -> None:
    s = await make_store(tmp_path)
    assert await s.append([]) == []
    assert await s.read() == [] and await s.run_ids() == [] and await s.head("r") is None
    assert await s.get("nope") is None
    with pytest.raises(StoreError, match="no blob"):
        await s.get_blob("f" * 64)
    evs = _run_events("r", [("a", 1)])
    await s.append(evs)
    assert await s.read(after=await s.last_seq()) == []
    assert [e.id for e in await s.read(limit=1)] == [evs[0].id]
    assert await s.read("r", types={"nothing"}) == []
    await s.aclose()
