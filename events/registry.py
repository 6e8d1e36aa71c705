"""Typed payloads: a registry from stable type names to frozen dataclasses, plus upcasters.

Stored events carry a stable type name such as ``"candidate.proposed"`` and an integer version,
never a Python path, so moving a class never breaks an old log. Reading an old version runs the
registered upcasters ``(type, from_version) -> dict -> dict`` in a loop until the payload has the
current version, and only then builds the dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar, dataclass_transform

__all__ = (
    "Payload",
    "PayloadMismatch",
    "UnknownEventType",
    "current_version",
    "decode_payload",
    "payload",
    "payload_class",
    "registered_types",
    "upcast",
    "upcaster",
)


class UnknownEventType(KeyError):
    """An event type name that no payload class is registered for."""


class PayloadMismatch(ValueError):
    """A stored payload whose fields are not those of its type (after upcasting): fields this
    code does not know (written by a newer version, or edited by hand) or required ones missing."""

    def __init__(self, type_name: str, version: int, unknown: Sequence[str], missing: Sequence[str]) -> None:
        self.type_name = type_name
        self.version = version
        self.unknown = tuple(unknown)
        self.missing = tuple(missing)
        parts = []
        if self.unknown:
            parts.append(f"unknown field{'s' if len(self.unknown) > 1 else ''} {', '.join(self.unknown)}")
        if self.missing:
            parts.append(f"missing field{'s' if len(self.missing) > 1 else ''} {', '.join(self.missing)}")
        super().__init__(f"{type_name!r} v{version} payload has {' and '.join(parts)}")


class Payload:
    """Base of every typed payload. Subclasses are frozen dataclasses made by ``@payload``."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    #: Fields whose values depend on wall time or the machine (durations, host facts). Replay
    #: and the crash-resume comparison leave them out; identities never depend on them.
    VOLATILE: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]  # subclasses are dataclasses


P = TypeVar("P", bound=type[Payload])
_CLASSES: dict[str, type[Payload]] = {}
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass_transform(frozen_default=True)
def payload(type_name: str, *, version: int = 1, volatile: tuple[str, ...] = ()) -> Callable[[P], P]:
    """Register a payload class under a stable name (and make it a frozen dataclass).

    ``dataclass_transform`` lets the type checker see every field of a payload class, so a
    misspelt field is a type error, not a run-time surprise."""

    def wrap(cls: P) -> P:
        if type_name in _CLASSES and _CLASSES[type_name].__qualname__ != cls.__qualname__:
            raise ValueError(f"event type {type_name!r} is registered twice")
        dc = dataclasses.dataclass(frozen=True)(cls)
        dc.TYPE = type_name
        dc.VERSION = version
        dc.VOLATILE = frozenset(volatile)
        _CLASSES[type_name] = dc
        return dc  # type: ignore[return-value]  # dataclass() returns the same class, typed as its base

    return wrap


def upcaster(
    type_name: str, from_version: int
) -> Callable[[Callable[[dict[str, Any]], dict[str, Any]]], Callable[[dict[str, Any]], dict[str, Any]]]:
    """Register a pure function that turns a ``from_version`` payload dict into the next version."""

    def wrap(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return wrap


def payload_class(type_name: str) -> type[Payload]:
    try:
        return _CLASSES[type_name]
    except KeyError:
        raise UnknownEventType(type_name) from None


def current_version(type_name: str) -> int:
    return payload_class(type_name).VERSION


def has_upcaster(type_name: str, from_version: int) -> bool:
    return (type_name, from_version) in _UPCASTERS


def registered_types() -> list[str]:
    return sorted(_CLASSES)


def upcast(type_name: str, version: int, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Apply upcasters until ``data`` is at the registered version; returns (version, data)."""
    target = current_version(type_name)
    while version < target:
        step = _UPCASTERS.get((type_name, version))
        if step is None:
            raise ValueError(f"no upcaster for {type_name!r} from version {version} to {target}")
        data = step(dict(data))
        version += 1
    if version > target:
        raise ValueError(f"{type_name!r} version {version} is newer than this code understands ({target})")
    return version, data


def decode_payload(type_name: str, version: int, data: dict[str, Any], *, drop_unknown: bool = False) -> Payload:
    """The typed payload. ``PayloadMismatch`` if its fields are not its type's, unless the only
    difference is fields this code does not know and ``drop_unknown`` is set (they are left out)."""
    cls = payload_class(type_name)
    _, data = upcast(type_name, version, data)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # registered classes are dataclasses
    names = {f.name for f in fields}
    unknown = sorted(set(data) - names)
    missing = [
        f.name
        for f in fields
        if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing or (unknown and not drop_unknown):
        raise PayloadMismatch(type_name, version, unknown, missing)
    if unknown:
        data = {k: v for k, v in data.items() if k in names}
    return cls(**data)
