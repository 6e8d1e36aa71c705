"""Deterministic numbers derived from the log: job seeds and LM sample namespaces.

Nothing here reads the clock or an unseeded RNG: a seed is a hash of an event identity, and an
LM sample's namespace is a hash of the run seed and the request's causal path (the keys from
the run's root down to the session that asked). So two runs with the same seed and config ask
for the same samples (and share the cache), while different sessions of one run, e.g. the five
meta-utility runs of one improver, get different samples of the same prompt.
"""

from __future__ import annotations

from events import Event, canonical_json, sha256_hex
from store.base import EventStore
from store.causation import ancestors

__all__ = ("causal_path", "lm_namespace", "namespace_of", "seed_from")


def seed_from(*parts: object) -> int:
    """A 31-bit seed from any JSON-able parts (e.g. an event id and a label)."""
    return int(sha256_hex(canonical_json([str(p) for p in parts]))[:8], 16) & 0x7FFFFFFF


async def causal_path(store: EventStore, ev: Event) -> list[str]:
    """``type:key`` steps from the run's root to ``ev`` (run ids excluded)."""
    steps = [f"{ev.type}:{ev.key}"]
    async for up in ancestors(store.get, ev):
        steps.append(f"{up.type}:{up.key}")
    return steps[::-1]


def namespace_of(path: list[str], seed: int) -> str:
    """The LM sample namespace of the session whose ``causal_path`` is ``path``."""
    return sha256_hex(canonical_json([seed, path]))[:20]


async def lm_namespace(store: EventStore, session: Event, seed: int) -> str:
    return namespace_of(await causal_path(store, session), seed)
