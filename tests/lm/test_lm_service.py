"""The cache-first service: lookup apart from recording, modes, strict replay with no network."""

from __future__ import annotations

import pathlib
import socket

import pytest
from lmtest_helpers import make_backend, program

from events import canonical_json, make_event
from events.types import Note
from lm import (
    CacheMiss,
    CacheMode,
    LMAnswer,
    LMRequest,
    LMService,
    OfflineMutationModel,
    OpenAICompatibleBackend,
    cache_key,
)
from lm.fake_server import FakeOpenAIServer
from store import CacheEntry, MemoryStore, SqliteStore


def req(text: str = "hello", n: int = 1, **kw: object) -> LMRequest:
    return LMRequest(model="fake-model", messages=[{"role": "user", "content": text}], n=n, **kw)  # type: ignore[arg-type]


def test_cache_key_covers_what_changes_the_reply() -> None:
    base = req()
    assert cache_key(base, 0) == cache_key(req(), 0)
    variants = [
        req("other"),
        req(n=2),
        req(temperature=0.2),
        req(top_p=0.9),
        req(stop=["x"]),
        req(seed=1),
        LMRequest(model="m2", messages=base.message_dicts),
        req(max_tokens=10),
    ]
    keys = {cache_key(v, 0) for v in variants} | {cache_key(base, 0), cache_key(base, 1), cache_key(base, 0, "ns")}
    assert len(keys) == len(variants) + 3
    assert set(base.canonical()) == {"model", "messages", "temperature", "max_tokens", "n", "top_p", "stop", "seed"}
    assert LMRequest.from_canonical(base.canonical()) == base
    with pytest.raises(ValueError):
        cache_key(base, -1)


@pytest.mark.anyio
async def test_answer_does_not_write_and_agent_appends_event_with_row(server: FakeOpenAIServer) -> None:
    """The agent flow: answer() writes nothing; event + cache row go in one append."""
    store = MemoryStore()
    async with LMService(make_backend(server), store) as svc:
        ans = await svc.answer(req(), 0, cause="ev-req")
        assert ans.source == "live" and await store.cache_get(ans.cache_key) is None
        ev = make_event("run-1", Note(text="lm answered", data={"key": ans.cache_key}), cause="ev-req", key=0)
        await store.append([ev], cache=[ans.cache_entry()])
        again = await svc.answer(req(), 0, cause="ev-req")
    assert again.source == "cache" and again.completions == ans.completions
    assert "test-key" not in canonical_json(ans.record)
    assert server.count("/v1/chat/completions") == 1


@pytest.mark.anyio
async def test_kth_identical_request_gets_kth_answer(server: FakeOpenAIServer) -> None:
    store = MemoryStore()
    async with LMService(make_backend(server), store) as svc:
        a0 = await svc.complete(req(), 0)
        a1 = await svc.complete(req(), 1)
        assert a0.texts != a1.texts
        assert (await svc.complete(req(), 1)).texts == a1.texts
        assert (await svc.complete(req(), 0)).texts == a0.texts
    assert server.count("/v1/chat/completions") == 2


@pytest.mark.anyio
async def test_replay_miss_names_request_and_cause() -> None:
    def never() -> OfflineMutationModel:
        raise AssertionError("replay constructed a backend")

    svc = LMService(never, MemoryStore(), CacheMode.REPLAY)
    with pytest.raises(CacheMiss) as info:
        await svc.answer(req("please improve my sorter"), 3, cause="evt-abc123")
    msg = str(info.value)
    assert "evt-abc123" in msg and "please improve my sorter" in msg and "ordinal 3" in msg
    assert info.value.key == cache_key(req("please improve my sorter"), 3)


@pytest.mark.anyio
async def test_conflicting_rerecord_is_refused() -> None:
    """A different answer under an existing key is a conflict, never a silent overwrite."""
    from store import ConflictError

    store = MemoryStore()
    svc = LMService(OfflineMutationModel(), store)
    ans = await svc.complete(req("```python\ndef f(x):\n    return x + 1\n```"), 0)
    await store.append([], cache=[ans.cache_entry()])  # identical: no-op
    bad = dict(ans.record, produced_by="someone-else")
    with pytest.raises(ConflictError):
        await store.append([], cache=[CacheEntry(ans.cache_key, bad)])


async def _session(svc: LMService, into: list[LMAnswer]) -> list[list[str]]:
    """A small improver-like session: repeated prompts, a batch, another temperature.

    Ordinals count identical requests, as the bridge derives them from the log."""
    code = program("walksat_seed")
    msg = f"Improve:\n```python\n{code}```"

    def r(text: str, n: int, temperature: float = 0.7) -> LMRequest:
        return LMRequest(
            model="fake-model",
            messages=[{"role": "system", "content": "expert"}, {"role": "user", "content": text}],
            n=n,
            temperature=temperature,
        )

    calls = [(r(msg, 2), 0), (r(msg, 3), 0), (r("no code here", 1), 0), (r(msg, 2), 1), (r(msg, 3, 1.0), 0)]
    out = []
    for request, ordinal in calls:
        ans = await svc.complete(request, ordinal)
        into.append(ans)
        out.append(ans.texts)
    return out


@pytest.mark.anyio
async def test_replay_is_bit_identical_with_the_network_unreachable(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record against a live endpoint into SQLite; replay the same session with the endpoint
    gone and every socket connect failing: identical texts, identical records, zero requests."""
    path = tmp_path / "run.sqlite"
    first: list[LMAnswer] = []
    second: list[LMAnswer] = []
    store = await SqliteStore.open(path)
    with FakeOpenAIServer(
        replies=lambda body: [
            f"r{len(body['messages'][-1]['content'])}-{i}-{body['temperature']}" for i in range(body.get("n", 1))
        ]
    ) as srv:
        async with LMService(make_backend(srv), store) as svc:
            recorded = await _session(svc, first)
        live_requests = srv.count()
        port = srv.port
    rows_before = [await store.cache_get(a.cache_key) for a in first]
    await store.aclose()
    assert live_requests == 5

    def no_network(self: socket.socket, *a: object, **k: object) -> None:
        raise OSError("network disabled by test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    dead = OpenAICompatibleBackend(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", model="fake-model")
    calls: list[str] = []

    def factory() -> OpenAICompatibleBackend:
        calls.append("constructed")
        return dead

    store2 = await SqliteStore.open(path)
    try:
        svc2 = LMService(factory, store2, CacheMode.REPLAY)
        replayed = await _session(svc2, second)
        rows_after = [await store2.cache_get(a.cache_key) for a in first]
    finally:
        await store2.aclose()
    assert replayed == recorded
    assert canonical_json(rows_after) == canonical_json(rows_before)
    assert calls == [] and dead.http_calls == 0
    assert [a.source for a in first] == ["live"] * 5 and [a.source for a in second] == ["cache"] * 5
    assert [a.cache_key for a in second] == [a.cache_key for a in first]
    assert canonical_json([a.record for a in second]) == canonical_json([a.record for a in first])
    assert [a.completions for a in second] == [a.completions for a in first]
