"""Recording signed checkpoints while a run works (what they are: ``events.checkpoint_events``).

Who appends them, so agents still never call each other: a small checkpoint agent follows the
run's log and signs the chain head after every ``checkpoint_every``-th event; the launcher
(``agents.launch.run_agents``) signs the run's end once every agent has stopped: finished,
failed, stopped at a spend cap, or interrupted. Replay and forks record none (they hold no
key); replay does not compare them.

Identities stay deterministic: a checkpoint's key is its count (``checkpoint/C``, an end one
``checkpoint/C/end``), its cause the run's root, and Ed25519 signatures are deterministic, so a
resume that signs the same count again records the very same event.
"""

from __future__ import annotations

import anyio
import anyio.abc
import structlog

from events import Event, make_event
from events.checkpoint_events import CHECKPOINT, CheckpointSigned
from events.signing import Signer, checkpoint_message
from store.base import EventStore
from store.errors import ConflictError, StoreError

__all__ = ("DEFAULT_EVERY", "INTERRUPTED", "checkpoint_event", "record_end_checkpoint", "run_checkpointer")

log = structlog.get_logger("checkpoints")

#: Events between two periodic checkpoints, unless the config says ``checkpoint_every``.
DEFAULT_EVERY = 500
#: The ``end`` of a checkpoint recorded when the run was interrupted (a signal, Ctrl-C).
INTERRUPTED = "interrupted"


def checkpoint_event(signer: Signer, root: Event, count: int, head: str, end: str = "") -> Event:
    """The checkpoint signing "the run's first ``count`` events end at ``head``"."""
    run_id = root.run_id
    data = CheckpointSigned(
        count=count,
        head=head,
        end=end,
        public_key=signer.public_key,
        fingerprint=signer.fingerprint,
        signature=signer.sign(checkpoint_message(run_id, count, head, end)),
    )
    return make_event(run_id, data, cause=root, key=f"checkpoint/{count}" + ("/end" if end else ""))


async def _append(store: EventStore, ev: Event) -> Event | None:
    try:
        return (await store.append([ev]))[0]
    except ConflictError:  # the same count signed before with another key: that one stands
        log.warning("checkpoint.conflict", run_id=ev.run_id, key=ev.key)
        return None


async def record_end_checkpoint(store: EventStore, signer: Signer, run_id: str, end: str) -> Event | None:
    """Sign every event of the run so far, marked as its end (``end``: the end event's type or
    ``interrupted``). Call it once no agent of the run is working any more."""
    events = await store.read(run_id)
    if not events:
        return None
    last = events[-1]
    if last.type == CHECKPOINT and last.decode(CheckpointSigned).end == end:
        return last  # already signed, nothing came after
    assert last.hash is not None
    return await _append(store, checkpoint_event(signer, events[0], len(events), last.hash, end))


async def record_interrupted(store: EventStore, signer: Signer, run_id: str) -> None:
    """The end checkpoint of an interrupted run: shielded and bounded, and never in the way of
    the interruption (a store that cannot be written is logged, not raised)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
        try:
            await record_end_checkpoint(store, signer, run_id, INTERRUPTED)
        except StoreError as exc:
            log.warning("checkpoint.not_recorded", run_id=run_id, error=str(exc))


async def run_checkpointer(
    store: EventStore,
    signer: Signer,
    run_id: str,
    every: int = DEFAULT_EVERY,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """The checkpoint agent: follows the run from its first event and signs the head after every
    ``every``-th one (counting every event of the run; a checkpoint itself is never signed by the
    next one, and a count already signed is skipped)."""
    if every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {every}")
    signed = {e.decode(CheckpointSigned).count for e in await store.read(run_id, types={CHECKPOINT})}
    root: Event | None = None
    count = 0
    prev: str | None = None
    task_status.started()
    async for ev in store.subscribe(run_id):
        count += 1
        root = root or ev
        if prev is not None and ev.prev_hash != prev:
            # The subscription skipped or repeated an event: recount from the log itself.
            events = await store.read(run_id)
            count = next(i for i, e in enumerate(events, 1) if e.id == ev.id)
        prev = ev.hash
        if ev.type == CHECKPOINT or count % every or count in signed or ev.hash is None:
            continue
        if await _append(store, checkpoint_event(signer, root, count, ev.hash)) is not None:
            signed.add(count)
