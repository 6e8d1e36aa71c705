"""The one ancestor walk: nearest cause first, to the root; ends on a missing link or a cycle."""

from __future__ import annotations

import pytest

from events import Event
from store.causation import ancestors, ancestors_in


def _ev(id_: str, cause: str | None) -> Event:
    return Event(id=id_, run_id="r", type="note", version=1, causation_id=cause, key=id_, payload={})


CHAIN = {e.id: e for e in (_ev("root", None), _ev("a", "root"), _ev("b", "a"), _ev("c", "b"))}


def test_walk_in_memory_nearest_first_to_the_root() -> None:
    assert [e.id for e in ancestors_in(CHAIN, CHAIN["c"])] == ["b", "a", "root"]
    assert list(ancestors_in(CHAIN, CHAIN["root"])) == []


def test_walk_ends_at_a_missing_link_and_on_a_cycle() -> None:
    broken = {k: v for k, v in CHAIN.items() if k != "a"}
    assert [e.id for e in ancestors_in(broken, CHAIN["c"])] == ["b"]
    loop = {"x": _ev("x", "y"), "y": _ev("y", "x")}
    assert [e.id for e in ancestors_in(loop, loop["x"])] == ["y"]


@pytest.mark.anyio
async def test_walk_through_a_store_get() -> None:
    async def get(event_id: str) -> Event | None:
        return CHAIN.get(event_id)

    assert [e.id async for e in ancestors(get, CHAIN["c"])] == ["b", "a", "root"]
    loop = {"x": _ev("x", "y"), "y": _ev("y", "x")}

    async def get_loop(event_id: str) -> Event | None:
        return loop.get(event_id)

    assert [e.id async for e in ancestors(get_loop, loop["x"])] == ["y"]
