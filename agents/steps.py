"""Small building blocks of workflows: idempotent "make sure this event exists" and lookups.

Both answer from the run's view (``ctx.runs``, ``agents.run_view``), which every caller has
refreshed at the start of its trigger (``RunMemory.refreshed_view``): the view then holds every
workflow-level event committed before that moment, so a miss needs no store round trip. An
answer committed later is itself a trigger and is seen by the next call.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence

from agents.context import AgentContext
from events import Event, make_event, sha256_hex
from events.registry import Payload
from events.routing import answer_types
from store import ConflictError

__all__ = ("answer_of", "ensure", "put_text")

_answer_types = functools.cache(answer_types)


async def ensure(
    ctx: AgentContext, run_id: str, data: Payload, *, cause: Event, key: str, blobs: Sequence[bytes | str] = ()
) -> Event:
    """Append the event if it is not there yet; return the stored one.

    The run's view answers first, so re-walking decisions already recorded costs no store
    round trip. On a miss the event is appended without a read first: the store's append is
    idempotent (an event already stored with the same content is returned as stored), so a
    copy recorded meanwhile by another process is simply returned. A conflicting stored event
    means another copy of the decision logic decided differently on the same facts, which is a
    determinism bug: it propagates (the run fails loudly).
    """
    ev = make_event(run_id, data, cause=cause, key=key)
    view = ctx.runs.view(run_id)
    existing = view.by_id.get(ev.id)
    if existing is not None:
        if not existing.same_content(ev):
            raise ConflictError(f"{ev.type} {ev.id} was recorded differently before; decisions diverged")
        return existing
    try:
        stored = (await ctx.store.append([ev], blobs=blobs))[0]
    except ConflictError as exc:
        raise ConflictError(f"{ev.type} {ev.id} was recorded differently before; decisions diverged") from exc
    view.add(stored)
    return stored


def answer_of(ctx: AgentContext, request: Event, types: Collection[str] | None = None) -> Event | None:
    """The answer to ``request`` the run's view holds (refreshed by the caller's trigger).

    ``types`` defaults to what answers a request of its type (``events.routing``)."""
    if types is None:
        types = _answer_types(request.type)
    return ctx.runs.view(request.run_id).answer(request.id, types)


def put_text(text: str) -> tuple[str, bytes]:
    raw = text.encode("utf-8")
    return sha256_hex(raw), raw
