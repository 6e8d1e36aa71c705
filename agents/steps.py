"""Small building blocks of workflows: idempotent "make sure this event exists" and lookups."""

from __future__ import annotations

from collections.abc import Sequence

from agents.context import AgentContext
from events import Event, make_event, sha256_hex
from events.registry import Payload
from store import ConflictError

__all__ = ("answer_of", "ensure", "put_text")


async def ensure(
    ctx: AgentContext, run_id: str, data: Payload, *, cause: Event, key: str, blobs: Sequence[bytes | str] = ()
) -> Event:
    """Append the event if it is not there yet; return the stored one.

    A conflicting stored event means another copy of the decision logic decided differently
    on the same facts, which is a determinism bug: it propagates (the run fails loudly).
    """
    ev = make_event(run_id, data, cause=cause, key=key)
    existing = await ctx.store.get(ev.id)
    if existing is not None:
        if not existing.same_content(ev):
            raise ConflictError(f"{ev.type} {ev.id} was recorded differently before; decisions diverged")
        return existing
    return (await ctx.store.append([ev], blobs=blobs))[0]


async def answer_of(ctx: AgentContext, request: Event, types: set[str]) -> Event | None:
    found = await ctx.store.children(request.id, types)
    return found[0] if found else None


def put_text(text: str) -> tuple[str, bytes]:
    raw = text.encode("utf-8")
    return sha256_hex(raw), raw
