"""Signed checkpoints: a signature, by a key held outside the store, over a run's chain head.

The hash chain proves a log was not changed by accident; anyone who can edit the file can
recompute it. A checkpoint signs ``(run_id, count, head, end)`` with an Ed25519 key the store
never holds (``STOP_SIGNING_KEY``), so an edited-and-rehashed chain, or a cut tail, no longer
matches a signature (``stop audit`` checks them; see ``replay.checkpoints``).
"""

from __future__ import annotations

from events.registry import Payload, payload

__all__ = ("AUDIT_TYPES", "CHECKPOINT", "CheckpointSigned")

CHECKPOINT = "checkpoint.signed"

#: Facts about the recording, not about what the run computed: whether they are present depends
#: on a key outside the run, and their position on the interleaving of agents. Replay, resume
#: and ``stop diff`` do not compare them.
AUDIT_TYPES = frozenset({CHECKPOINT})


@payload(CHECKPOINT)
class CheckpointSigned(Payload):
    """The run's first ``count`` events end at chain hash ``head``, signed.

    ``end`` is empty for a periodic checkpoint (every ``checkpoint_every`` events), else how the
    run ended here: ``run.finished``, ``run.failed``, ``budget.exhausted`` or ``interrupted``; an
    end checkpoint covers every event before it. The signature (Ed25519, base64) is over
    ``events.signing.checkpoint_message(run_id, count, head, end)``; ``public_key`` is
    ``ed25519:<base64 of the raw key>`` and ``fingerprint`` the first 16 hex digits of its SHA-256.
    """

    count: int
    head: str
    end: str
    public_key: str
    fingerprint: str
    signature: str
