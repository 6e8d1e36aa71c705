"""The event envelope: deterministic identity, canonical body, per-run hash chain."""

from __future__ import annotations

import builtins
import contextvars
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from json.encoder import encode_basestring as _encode_basestring
from typing import Any, TypeVar

from events.codec import canonical_bytes, canonical_json, sha256_hex
from events.registry import (
    Payload,
    PayloadMismatch,
    UnknownEventType,
    current_version,
    decode_payload,
    payload_class,
    upcast,
)
from outcome import UsageError

__all__ = (
    "GENESIS",
    "ChainReport",
    "Event",
    "StoredForm",
    "UndecodableEvent",
    "chain_hash",
    "content_key",
    "event_id",
    "make_event",
    "stored_event",
    "tolerating_unknown_fields",
    "undecodable_events",
    "upcast_on_read",
    "verify_chain",
)


P = TypeVar("P", bound=Payload)


def _STR(value: str | None) -> str:
    """JSON for a str or None, exactly as ``canonical_json`` writes it (C fast path)."""
    return "null" if value is None else _encode_basestring(value)


#: The ``prev_hash`` of a run's first event.
GENESIS = "0" * 64


def event_id(run_id: str, causation_id: str | None, type_name: str, key: str) -> str:
    """Identity = hash of (run, cause, type, key within the cause). Never random, never time."""
    return sha256_hex(canonical_bytes([run_id, causation_id, type_name, key]))[:32]


def content_key(content: Any, occurrence: int) -> str:
    """Key for requests that come out of running code: content hash plus occurrence index."""
    return f"{sha256_hex(canonical_bytes(content))[:24]}#{occurrence}"


class UndecodableEvent(UsageError, ValueError):
    """A stored event whose payload does not fit its type (exit 2): named by id, type and field.

    Raised by ``Event.data``/``Event.decode`` instead of a bare ``TypeError``/``ValueError`` from
    deep inside a command, so a read command says in one line which event cannot be read and
    why; ``stop audit`` lists every such event as a finding instead (``undecodable_events``)."""

    def __init__(self, event: Event, problem: ValueError) -> None:
        self.event_id = event.id
        self.event_type = event.type
        self.seq = event.seq
        self.unknown: tuple[str, ...] = getattr(problem, "unknown", ())
        self.missing: tuple[str, ...] = getattr(problem, "missing", ())
        where = f"seq {event.seq}, " if event.seq is not None else ""
        self.reason = str(problem)
        super().__init__(
            f"event {event.id} ({where}run {event.run_id}) cannot be read: {problem}"
            " (written by a newer STOP, or edited after it was recorded)",
            hint=f"`stop audit {event.run_id}` lists every such event; a newer STOP may read it",
        )


#: While set (``tolerating_unknown_fields``), decoding leaves out fields a type does not know and
#: records the event here instead of raising.
_TOLERATED: contextvars.ContextVar[dict[str, UndecodableEvent] | None] = contextvars.ContextVar(
    "stop_tolerated_payloads", default=None
)


@contextmanager
def tolerating_unknown_fields() -> Iterator[dict[str, UndecodableEvent]]:
    """Within the block, a payload with fields its type does not know decodes without them
    (missing fields still raise); the events met are collected, by id, in the yielded dict.

    For the audit: it must go on past such an event to check and count everything else, and
    report the event as a finding rather than stop at it."""
    seen: dict[str, UndecodableEvent] = {}
    token = _TOLERATED.set(seen)
    try:
        yield seen
    finally:
        _TOLERATED.reset(token)


def _decode(ev: Event) -> Payload:
    try:
        return decode_payload(ev.type, ev.version, ev.payload)
    except PayloadMismatch as exc:
        tolerated = _TOLERATED.get()
        if tolerated is None or exc.missing:
            raise UndecodableEvent(ev, exc) from exc
        tolerated.setdefault(ev.id, UndecodableEvent(ev, exc))
        return decode_payload(ev.type, ev.version, ev.payload, drop_unknown=True)
    except UnknownEventType:
        raise  # a routing or registration bug, not bad data
    except ValueError as exc:  # a version this code has no upcaster for (or a newer one)
        raise UndecodableEvent(ev, exc) from exc


def undecodable_events(events: Iterable[Event]) -> list[UndecodableEvent]:
    """The events of a registered type whose payload does not decode to it, in order (events of
    a type this code does not know are not judged: nothing here reads them)."""
    out: list[UndecodableEvent] = []
    for ev in events:
        try:
            decode_payload(ev.type, ev.version, ev.payload)
        except UnknownEventType:
            continue
        except ValueError as exc:  # PayloadMismatch, or a version without an upcaster
            out.append(UndecodableEvent(ev, exc))
    return out


@dataclass(frozen=True)
class StoredForm:
    """The version and payload an event was stored with, kept when it is read upcast."""

    version: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """One immutable fact. ``seq``, ``prev_hash`` and ``hash`` are assigned by the store.

    ``version`` and ``payload`` are what consumers read: a store hands out every event upcast
    to the newest version of its type (``upcast_on_read``). What was stored stays in
    ``stored_as`` (None when the two are the same): identity, the hash chain, conflicts and
    copies all use the stored form (``body``), so reading never rewrites history. ``stored_as``
    is no ``__init__`` argument: only a read sets it, so ``Event(...)`` and
    ``dataclasses.replace`` give an event exactly as written."""

    id: str
    run_id: str
    type: str
    version: int
    causation_id: str | None
    key: str
    payload: dict[str, Any]
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None
    stored_as: StoredForm | None = field(default=None, init=False, compare=False, repr=False)

    @cached_property
    def data(self) -> Payload:
        """The payload as its typed, upcast dataclass (decoded once per event object);
        ``UndecodableEvent`` if it does not fit its type."""
        return _decode(self)

    def decode(self, cls: builtins.type[P]) -> P:
        """The payload as ``cls``, upcast to its current version; the type checker sees the fields.

        A ``TypeError`` when this event is of another type (a routing bug, not bad data)."""
        if self.type != cls.TYPE:
            raise TypeError(f"event {self.id} is {self.type!r}, not {cls.TYPE!r}")
        data = self.data
        assert isinstance(data, cls)
        return data

    def try_decode(self, cls: builtins.type[P]) -> P | None:
        """``decode(cls)``, or None when this event is of another type or its payload does not
        decode (inspection reads damaged logs too: the audit names the damage)."""
        if self.type != cls.TYPE:
            return None
        try:
            return self.decode(cls)
        except (TypeError, ValueError, KeyError):
            return None

    def is_a(self, cls: builtins.type[Payload]) -> bool:
        """Whether this event is of ``cls``'s type (``ev.is_a(UtilityEvaluated)``)."""
        return self.type == cls.TYPE

    @cached_property
    def payload_json(self) -> str:
        """The stored payload's canonical JSON (what a store writes), encoded once per event."""
        return canonical_json(self.payload if self.stored_as is None else self.stored_as.payload)

    @property
    def stored_version(self) -> int:
        """The version this event was stored with (what a store writes)."""
        return self.version if self.stored_as is None else self.stored_as.version

    @cached_property
    def body_json(self) -> str:
        """``canonical_json(self.body())``, assembled without re-encoding the payload."""
        return (
            f'{{"causation_id":{_STR(self.causation_id)},"id":{_STR(self.id)},'
            f'"key":{_STR(self.key)},"payload":{self.payload_json},'
            f'"run_id":{_STR(self.run_id)},"type":{_STR(self.type)},"version":{int(self.stored_version)}}}'
        )

    def body(self) -> dict[str, Any]:
        """Everything that makes the event what it is, as stored (what the chain hash and
        conflicts cover; ``Event(**ev.body())`` is the event as it was recorded)."""
        return {
            "id": self.id,
            "run_id": self.run_id,
            "type": self.type,
            "version": self.stored_version,
            "causation_id": self.causation_id,
            "key": self.key,
            "payload": self.payload if self.stored_as is None else self.stored_as.payload,
        }

    def same_content(self, other: Event) -> bool:
        return self.body_json == other.body_json

    def comparable(self) -> dict[str, Any]:
        """The body at the current version, without wall-clock/machine fields: what replay and
        resume compare. An event recorded before a payload changed compares equal to the same
        fact recorded now (the upcaster carries it forward)."""
        ev = self.upcast()
        body = {**ev.body(), "version": ev.version}
        try:
            volatile = payload_class(self.type).VOLATILE
        except UnknownEventType:
            volatile = frozenset()
        body["payload"] = {k: v for k, v in ev.payload.items() if k not in volatile}
        return body

    def upcast(self) -> Event:
        """This event at the newest version of its type, its stored form kept in ``stored_as``.

        Itself when already current, of an unknown type, without an upcaster path (or of a
        newer version than this code knows), or of a shape its upcaster cannot read (a damaged
        log must stay readable for the audit): then ``data`` names the problem when read."""
        try:
            target = current_version(self.type)
        except UnknownEventType:
            return self
        if self.version == target:
            return self
        try:
            version, payload = upcast(self.type, self.version, self.payload)
        except (ValueError, KeyError, TypeError, AttributeError):
            return self
        out = object.__new__(Event)
        out.__dict__.update(
            id=self.id,
            run_id=self.run_id,
            type=self.type,
            version=version,
            causation_id=self.causation_id,
            key=self.key,
            payload=payload,
            seq=self.seq,
            prev_hash=self.prev_hash,
            hash=self.hash,
            stored_as=self.stored_as or StoredForm(self.version, self.payload),
        )
        return out

    def as_stored(self) -> Event:
        """This event exactly as it was (or will be) stored: the form a store writes."""
        if self.stored_as is None:
            return self
        return Event(**self.body(), seq=self.seq, prev_hash=self.prev_hash, hash=self.hash)

    def stored(self, *, seq: int, prev_hash: str) -> Event:
        """The stored form with the store's fields set (what an append writes)."""
        # Built through __dict__ because this is the append hot path and the frozen dataclass
        # __init__ costs more than the hashing.
        base = self.as_stored()
        out = object.__new__(Event)
        out.__dict__.update(base.__dict__)
        out.__dict__.pop("data", None)
        out.__dict__.update(seq=seq, prev_hash=prev_hash, hash=chain_hash(prev_hash, base))
        return out


def upcast_on_read(ev: Event) -> Event:
    """What every store applies to an event it hands out: the newest version of its type."""
    return ev.upcast()


def stored_event(
    *,
    id: str,
    run_id: str,
    type: str,
    version: int,
    causation_id: str | None,
    key: str,
    payload: dict[str, Any],
    seq: int | None = None,
    prev_hash: str | None = None,
    hash: str | None = None,
) -> Event:
    """A stored row as the Event consumers read (upcast; the stored form kept for the chain)."""
    return Event(
        id=id,
        run_id=run_id,
        type=type,
        version=version,
        causation_id=causation_id,
        key=key,
        payload=payload,
        seq=seq,
        prev_hash=prev_hash,
        hash=hash,
    ).upcast()


def make_event(run_id: str, data: Payload, *, cause: Event | str | None, key: str | int) -> Event:
    """Build an event whose identity derives from its cause, its type and its key."""
    causation_id = cause.id if isinstance(cause, Event) else cause
    key_s = str(key)
    text = canonical_json(data.to_dict())
    ev = Event(
        id=event_id(run_id, causation_id, data.TYPE, key_s),
        run_id=run_id,
        type=data.TYPE,
        version=data.VERSION,
        causation_id=causation_id,
        key=key_s,
        payload=json.loads(text),
    )
    ev.__dict__["payload_json"] = text
    ev.__dict__["body_json"] = ev.body_json  # the canonical body is fixed at creation
    return ev


def chain_hash(prev_hash: str, event: Event) -> str:
    return sha256_hex(prev_hash.encode("ascii") + b"\n" + event.body_json.encode("utf-8"))


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    broken_at: str | None = None
    broken_seq: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"chain ok: {self.checked} events"
        return f"chain broken at event {self.broken_at} (seq {self.broken_seq}): {self.reason}"


def verify_chain(events: Iterable[Event]) -> ChainReport:
    """Walk one run's events in log order; name the first event whose link does not hold."""
    prev = GENESIS
    n = 0
    for ev in events:
        n += 1
        expected_id = event_id(ev.run_id, ev.causation_id, ev.type, ev.key)
        if ev.id != expected_id:
            return ChainReport(False, n, ev.id, ev.seq, "identity does not match its fields")
        if ev.prev_hash != prev:
            return ChainReport(False, n, ev.id, ev.seq, "prev_hash does not match the previous event")
        if ev.hash != chain_hash(prev, ev):
            return ChainReport(False, n, ev.id, ev.seq, "stored hash does not match the event's content")
        prev = ev.hash
    return ChainReport(True, n)
