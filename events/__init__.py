"""Immutable, typed, versioned events with deterministic identities and a per-run hash chain."""

from events.codec import CanonicalError as CanonicalError
from events.codec import canonical_json as canonical_json
from events.codec import sha256_hex as sha256_hex
from events.model import GENESIS as GENESIS
from events.model import ChainReport as ChainReport
from events.model import Event as Event
from events.model import content_key as content_key
from events.model import event_id as event_id
from events.model import make_event as make_event
from events.model import verify_chain as verify_chain
from events.registry import Payload as Payload
from events.registry import payload as payload
from events.registry import upcaster as upcaster
from events import stop_events as stop_events  # noqa: E402  (registers the agents' payload types)
from events import types as types  # noqa: E402  (registers the core payload types)

__all__ = (
    "CanonicalError",
    "canonical_json",
    "sha256_hex",
    "GENESIS",
    "ChainReport",
    "Event",
    "content_key",
    "event_id",
    "make_event",
    "verify_chain",
    "Payload",
    "payload",
    "upcaster",
    "types",
)
