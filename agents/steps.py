"""Small building blocks of workflows: idempotent "make sure this event exists" and lookups."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from agents.context import AgentContext
from events import Event, make_event, sha256_hex
from events.registry import Payload
from events.routing import answer_types
from store import ConflictError

__all__ = ("answer_of", "ensure", "put_text")


async def ensure(
    ctx: AgentContext, run_id: str, data: Payload, *, cause: Event, key: str, blobs: Sequence[bytes | str] = ()
) -> Event:
    """Append the event if it is not there yet; return the stored one.

    The run's view (``ctx.runs``, ``agents.runs``) answers first, so re-walking decisions already recorded
    costs no store round trip. A conflicting stored event means another copy of the decision
    logic decided differently on the same facts, which is a determinism bug: it propagates (the
    run fails loudly).
    """
    ev = make_event(run_id, data, cause=cause, key=key)
    view = ctx.runs.view(run_id)
    existing = view.by_id.get(ev.id) or await ctx.store.get(ev.id)
    if existing is not None:
        if not existing.same_content(ev):
            raise ConflictError(f"{ev.type} {ev.id} was recorded differently before; decisions diverged")
        view.add(existing)
        return existing
    stored = (await ctx.store.append([ev], blobs=blobs))[0]
    view.add(stored)
    return stored


async def answer_of(ctx: AgentContext, request: Event, types: Collection[str] | None = None) -> Event | None:
    """The answer to ``request`` from the run's view, else from the store (then remembered).

    ``types`` defaults to what answers a request of its type (``events.routing``)."""
    if types is None:
        types = answer_types(request.type)
    view = ctx.runs.view(request.run_id)
    known = view.answer(request.id, types)
    if known is not None:
        return known
    found = await ctx.store.children(request.id, types)
    if found:
        view.add(found[0])
    return found[0] if found else None


def put_text(text: str) -> tuple[str, bytes]:
    raw = text.encode("utf-8")
    return sha256_hex(raw), raw
