"""The proposer: answers ``lm.requested`` through the LM layer (cache, retries, limits).

The answering event and the cache row are written in one transaction, so there is no moment
where a reply is cached but not announced, or announced but not cached. Reply texts go to the
blob store; the event carries their hashes and token counts.
"""

from __future__ import annotations

import anyio

from agents.claims import hold_lease, try_claim
from agents.context import AgentContext, append_once
from agents.crashpoints import crash_point
from agents.loop import serve
from events import Event, make_event, sha256_hex
from events.stop_events import LMFailed, LMResponded
from lm import CacheMiss, CacheMode, LMBackend, LMError, LMRequest, LMService
from store.base import EventStore

__all__ = ("run_proposer",)

_DONE = {"lm.responded", "lm.failed"}


async def answer_request(
    ctx: AgentContext, backend: LMBackend | None, cache: EventStore, mode: CacheMode, work: Event
) -> bool:
    claim = await try_claim(ctx, work, _DONE)
    if claim.event is None:
        return claim.done
    p = work.payload
    req = LMRequest.from_canonical(p["request"])
    service = LMService(backend, cache, mode, namespace=p["namespace"])
    async with hold_lease(ctx, work, claim.event):
        try:
            answer = await service.answer(req, int(p["ordinal"]), cause=work.id)
        except CacheMiss:
            raise  # replay found a request the recording never made: a divergence, not a failure
        except LMError as e:
            failed = make_event(
                work.run_id, LMFailed(error=str(e)[:2000], kind=type(e).__name__), cause=work, key="answer"
            )
            await append_once(ctx.store, [failed])
            return True
    crash_point("proposer.before_announce")
    texts = [c.text.encode("utf-8") for c in answer.completions]
    completions = [
        {
            "text": sha256_hex(t),
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "finish_reason": c.finish_reason,
        }
        for t, c in zip(texts, answer.completions, strict=True)
    ]
    done = make_event(
        work.run_id,
        LMResponded(
            cache_key=answer.cache_key,
            completions=completions,
            produced_by=str(answer.record.get("produced_by", "")),
            source=answer.source,
        ),
        cause=work,
        key="answer",
    )
    await append_once(ctx.store, [done], blobs=texts, cache=[answer.cache_entry()])
    return True


async def run_proposer(
    ctx: AgentContext,
    backend: LMBackend | None,
    *,
    mode: CacheMode = CacheMode.LIVE,
    cache: EventStore | None = None,
    concurrency: int = 16,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """``cache`` is where answers are looked up (the recorded log during replay)."""
    source = cache if cache is not None else ctx.store

    async def handle(ev: Event) -> bool:
        return await answer_request(ctx, backend, source, mode, ev)

    await serve(ctx, {"lm.requested"}, handle, limit=concurrency, task_status=task_status)
