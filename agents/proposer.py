"""The proposer: answers ``lm.requested`` through the LM layer (cache, retries, spend caps).

The answering event and the cache row are written in one transaction, so there is no moment
where a reply is cached but not announced, or announced but not cached. Reply texts go to the
blob store; the event carries their hashes and token counts.

Outcomes of one request:

- answered (cache or endpoint): ``lm.responded``;
- a transient failure that outlasted the retries: ``lm.failed`` (that request fails, the run
  goes on; the improver sees an error);
- a fatal refusal (key, model, bad request, no quota): ``lm.failed`` with ``fatal`` and then
  ``run.failed`` naming cause and fix; the proposer asks the model nothing more in that run;
- refused by a run-level spend cap (``lm.spend``): nothing is written for the request, which
  stays unanswered; once no request is in flight, ``budget.exhausted`` ends the run (resumable
  with a raised cap, recorded as ``budget.raised``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import structlog

from agents.claims import hold_lease, try_claim
from agents.context import AgentContext, append_once
from agents.crashpoints import crash_point
from agents.loop import serve
from agents.runinfo import run_info
from events import Event, make_event, sha256_hex
from events.lm_events import BudgetExhausted, BudgetRaised, LMEndpointObserved
from events.routing import LM_ANSWERS
from events.stop_events import LMFailed, LMRequested, LMResponded
from events.types import RunFailed
from lm import (
    CacheMiss,
    CacheMode,
    LMAnswer,
    LMBackend,
    LMError,
    LMFatalError,
    LMRequest,
    LMService,
    LMUnavailable,
    SpendCaps,
    SpendLedger,
)
from store.base import EventStore

__all__ = ("ProposerState", "answer_request", "load_ledger", "run_caps", "run_proposer")

log = structlog.get_logger("lm.proposer")

_DONE = LM_ANSWERS
_LEDGER_TYPES = {LMRequested.TYPE, LMResponded.TYPE, LMFailed.TYPE, BudgetRaised.TYPE, RunFailed.TYPE}


@dataclass
class ProposerState:
    """Per proposer process: one spend ledger per run, what was last recorded of the endpoint."""

    ledgers: dict[str, SpendLedger] = field(default_factory=dict)
    endpoint_recorded: dict[str, str] = field(default_factory=dict)
    lock: anyio.Lock = field(default_factory=anyio.Lock)


async def run_caps(store: EventStore, run_id: str) -> tuple[SpendCaps, int]:
    """The run's caps: its config, then every ``budget.raised`` in order; and how many raises."""
    info = await run_info(store, run_id)
    caps = SpendCaps(
        max_cost_usd=info.config.max_cost_usd,
        max_tokens_total=info.config.max_tokens_total,
        max_lm_calls=info.config.max_lm_calls,
    )
    raised = 0
    for ev in await store.read(run_id, types={BudgetRaised.TYPE}):
        caps = caps.raised(ev.decode(BudgetRaised).caps)
        raised += 1
    return caps, raised


async def load_ledger(store: EventStore, run_id: str) -> SpendLedger:
    """Fold the run's log into its spend: answered calls, tokens, cost at the run's prices."""
    info = await run_info(store, run_id)
    caps, raised = await run_caps(store, run_id)
    ledger = SpendLedger(caps=caps, prices=dict(info.config.lm.get("prices") or {}), raised=raised)
    models: dict[str, str] = {}
    for ev in await store.read(run_id, types=_LEDGER_TYPES):
        if ev.is_a(LMRequested):
            models[ev.id] = str(ev.decode(LMRequested).request["model"])
        elif ev.is_a(LMResponded) and (answered := ev.decode(LMResponded)).source != "cache":
            comps = answered.completions
            ledger.settle(
                ev.id,
                models.get(ev.causation_id or "", ""),
                sum(int(c["prompt_tokens"]) for c in comps),
                sum(int(c["completion_tokens"]) for c in comps),
            )
        elif ev.is_a(LMFailed) and (failed := ev.decode(LMFailed)).kind != "skipped":
            ledger.settle(ev.id, "", 0, 0)
            if failed.fatal:
                ledger.fatal = failed.error
    return ledger


async def _ledger(ctx: AgentContext, state: ProposerState, run_id: str) -> SpendLedger:
    async with state.lock:
        if run_id not in state.ledgers:
            state.ledgers[run_id] = await load_ledger(ctx.store, run_id)
        return state.ledgers[run_id]


async def _root(ctx: AgentContext, run_id: str) -> Event:
    return (await ctx.runs.info(run_id)).root


async def _maybe_exhausted(ctx: AgentContext, ledger: SpendLedger, run_id: str) -> None:
    hit = ledger.exhausted_now()
    if hit is None:
        return
    root = await _root(ctx, run_id)
    ev = make_event(
        run_id,
        BudgetExhausted(
            cap=hit.cap, limit=hit.limit, spent=hit.spent.to_dict(), message=hit.message(run_id), raised=ledger.raised
        ),
        cause=root,
        key=f"budget.exhausted/{ledger.raised}",
    )
    if await append_once(ctx.store, [ev]) is not None:
        log.warning("budget.exhausted", run_id=run_id, message=hit.message(run_id))


async def _record_endpoint(ctx: AgentContext, state: ProposerState, backend: LMBackend | None, run_id: str) -> None:
    accepts_fn = getattr(backend, "accepts", None)
    if accepts_fn is None:
        return
    accepts = accepts_fn()
    digest = sha256_hex(repr(sorted(accepts.items())).encode())
    if state.endpoint_recorded.get(run_id) == digest:
        return
    state.endpoint_recorded[run_id] = digest
    ev = make_event(
        run_id,
        LMEndpointObserved(endpoint=str(getattr(backend, "name", "")), accepts=accepts),
        cause=await _root(ctx, run_id),
        key=f"lm.endpoint/{digest[:16]}",
    )
    await append_once(ctx.store, [ev])


async def _fail(ctx: AgentContext, work: Event, payload: LMFailed) -> None:
    await append_once(ctx.store, [make_event(work.run_id, payload, cause=work, key="answer")])


async def answer_request(
    ctx: AgentContext,
    backend: LMBackend | None,
    cache: EventStore,
    mode: CacheMode,
    work: Event,
    state: ProposerState | None = None,
) -> bool:
    state = state or ProposerState()
    p = work.decode(LMRequested)
    req = LMRequest.from_canonical(p.request)
    service = LMService(backend, cache, mode, namespace=p.namespace)
    live = mode is not CacheMode.REPLAY
    if not live and await _replay_failure(ctx, cache, work):
        return True
    ledger = await _ledger(ctx, state, work.run_id) if live else None
    if ledger is not None:
        kids = await ctx.store.children(work.id, _DONE)
        if kids:
            return True
        if ledger.fatal is not None:
            await _fail(
                ctx,
                work,
                LMFailed(error=f"not sent: the run stopped asking the model ({ledger.fatal[:300]})", kind="skipped"),
            )
            return True
        if await cache.cache_get(service.key(req, p.ordinal)) is None:
            hit = ledger.reserve(work.id, req)
            if hit is not None:  # stays unanswered: resume with a raised cap answers it
                await _maybe_exhausted(ctx, ledger, work.run_id)
                return True
    try:
        return await _answer(ctx, service, req, work, ledger)
    finally:
        if ledger is not None:
            ledger.release(work.id)
            await _maybe_exhausted(ctx, ledger, work.run_id)
            await _record_endpoint(ctx, state, backend, work.run_id)


async def _replay_failure(ctx: AgentContext, recorded: EventStore, work: Event) -> bool:
    """Replay: a request the recording answered with ``lm.failed`` fails the same way (and a
    fatal one fails the run the same way), so a run with LM failures replays identically."""
    failed = await recorded.children(work.id, {LMFailed.TYPE})
    if not failed:
        return False
    data = failed[0].decode(LMFailed)
    await _fail(ctx, work, data)
    if data.fatal:
        root = await _root(ctx, work.run_id)
        ends = await recorded.children(root.id, {RunFailed.TYPE})
        if ends:
            await append_once(ctx.store, [make_event(work.run_id, ends[0].decode(RunFailed), cause=root, key="failed")])
    return True


async def _answer(
    ctx: AgentContext, service: LMService, req: LMRequest, work: Event, ledger: SpendLedger | None
) -> bool:
    claim = await try_claim(ctx, work, _DONE)
    if claim.event is None:
        return claim.done
    ordinal = work.decode(LMRequested).ordinal
    async with hold_lease(ctx, work, claim.event):
        try:
            answer = await service.answer(req, ordinal, cause=work.id)
        except CacheMiss:
            raise  # replay found a request the recording never made: a divergence, not a failure
        except LMFatalError as e:
            await _fail_fatal(ctx, work, req, ledger, e)
            return True
        except LMError as e:
            if ledger is not None:
                ledger.settle(work.id, req.model, 0, 0)
            kind = e.kind if isinstance(e, LMUnavailable) else "error"
            status = e.status if isinstance(e, LMUnavailable) else None
            log.warning("lm.failed", run_id=work.run_id, kind=kind, error=str(e)[:500])
            await _fail(ctx, work, LMFailed(error=str(e)[:2000], kind=kind, status=status))
            return True
    crash_point("proposer.before_announce")
    done, texts = _responded(work, answer)
    await append_once(ctx.store, [done], blobs=texts, cache=[answer.cache_entry()])
    if ledger is not None and answer.source != "cache":
        ledger.settle(work.id, req.model, answer.prompt_tokens, answer.completion_tokens)
    return True


async def _fail_fatal(
    ctx: AgentContext, work: Event, req: LMRequest, ledger: SpendLedger | None, e: LMFatalError
) -> None:
    """A fatal refusal: this request fails, and so does the run (nothing more is asked)."""
    if ledger is not None:
        ledger.settle(work.id, req.model, 0, 0)
        ledger.fatal = str(e)
    await _fail(ctx, work, LMFailed(error=str(e)[:2000], kind=e.kind, status=e.status, fatal=True))
    log.error("lm.failed", run_id=work.run_id, kind=e.kind, status=e.status, error=str(e)[:500])
    failed = make_event(
        work.run_id,
        RunFailed(error=f"the language model is unusable: {e}"[:2000], detail=f"lm.failed {e.kind}"),
        cause=await _root(ctx, work.run_id),
        key="failed",
    )
    await append_once(ctx.store, [failed])


def _responded(work: Event, answer: LMAnswer) -> tuple[Event, list[bytes]]:
    """The ``lm.responded`` for an answer, and its completion texts (the blobs it names)."""
    texts = [c.text.encode("utf-8") for c in answer.completions]
    completions = [
        {
            "text": sha256_hex(t),
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "finish_reason": c.finish_reason,
            **({"usage_note": c.usage_note} if c.usage_note is not None else {}),
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
    return done, texts


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
    state = ProposerState()

    async def handle(ev: Event) -> bool:
        return await answer_request(ctx, backend, source, mode, ev, state)

    await serve(ctx, {LMRequested.TYPE}, handle, limit=concurrency, task_status=task_status)
