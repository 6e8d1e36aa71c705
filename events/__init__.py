"""Immutable, typed, versioned events with deterministic identities and a per-run hash chain.

Payload types are registered when their module is imported, and importing ``events`` imports
every module that defines them (below, in a fixed order), so any process that imports
``events`` knows the same types, whatever else it imported first. A new module of payload
types must be imported here; ``tests/agents/test_routing.py`` checks that a fresh interpreter
importing only ``events`` knows every type ``events.catalogue.load_all()`` finds.
Who reacts to which type is declared in ``events.routing``.
"""

from events import checkpoint_events as checkpoint_events
from events import lm_events as lm_events
from events import routing as routing
from events import stop_events as stop_events
from events import types as types
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

__all__ = (
    "GENESIS",
    "CanonicalError",
    "ChainReport",
    "Event",
    "Payload",
    "canonical_json",
    "content_key",
    "event_id",
    "make_event",
    "payload",
    "routing",
    "sha256_hex",
    "types",
    "upcaster",
    "verify_chain",
)
