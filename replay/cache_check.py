"""Is an LM cache row the one its event recorded? (Used by ``stop audit`` and by forks.)

The proposer writes an answer's cache row in the same transaction as its ``lm.responded`` event,
whose payload holds the row's key, each completion's text digest, token counts and finish
reason, and the backend that produced it; the ``lm.requested`` event it answers holds the
request, namespace and ordinal the key is derived from. The event is covered by the hash chain
(and by signed checkpoints); the cache table is not. So a row is trusted only if it agrees with
its event in every one of those fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events import Event, canonical_json, sha256_hex
from events.stop_events import LMRequested, LMResponded
from lm import LMRequest, cache_key

__all__ = ("cache_row_problem",)


def cache_row_problem(requested: Event, responded: Event, record: Mapping[str, Any] | None) -> str | None:
    """Why the cache row ``record`` does not match the events that recorded it (None: it does)."""
    try:
        rq, rs = requested.decode(LMRequested), responded.decode(LMResponded)
    except (TypeError, ValueError) as e:  # a payload of another shape: the row cannot be trusted
        return f"the events recording cache row of {responded.id} do not decode: {e}"
    key = rs.cache_key
    try:
        derived: str | None = cache_key(LMRequest.from_canonical(rq.request), rq.ordinal, rq.namespace)
    except (KeyError, TypeError, ValueError):  # not a request this code can re-key: compare the rest
        derived = None
    if rq.cache_key != key:
        return f"cache key {key[:16]} is not the key the request event names ({rq.cache_key[:16]})"
    if derived is not None and key != derived:
        return f"cache key {key[:16]} is not the key of the recorded request ({derived[:16]})"
    if record is None:
        return f"cache row {key[:16]} is missing"
    if canonical_json(record.get("request")) != canonical_json(rq.request):
        return f"cache row {key[:16]} holds a different request"
    if record.get("ordinal") != rq.ordinal:
        return f"cache row {key[:16]} holds ordinal {record.get('ordinal')}, the event {rq.ordinal}"
    if str(record.get("produced_by", "")) != rs.produced_by:
        return f"cache row {key[:16]} was produced by {record.get('produced_by')!r}, the event says {rs.produced_by!r}"
    got = record.get("completions")
    want = rs.completions
    if not isinstance(got, list) or len(got) != len(want):
        return f"cache row {key[:16]} holds {len(got) if isinstance(got, list) else 'no'} completions, the event {len(want)}"
    for i, (c, w) in enumerate(zip(got, want, strict=True)):
        if not isinstance(c, Mapping) or not isinstance(c.get("text"), str):
            return f"cache row {key[:16]} completion {i} has no text"
        if sha256_hex(c["text"].encode("utf-8")) != w.get("text"):
            return f"cache row {key[:16]} completion {i} text differs from the recorded answer"
        for name in ("prompt_tokens", "completion_tokens", "finish_reason"):
            if c.get(name) != w.get(name):
                return f"cache row {key[:16]} completion {i} {name} is {c.get(name)!r}, the event {w.get(name)!r}"
    return None
