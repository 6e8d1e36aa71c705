"""Typed payloads: a registry from stable type names to frozen dataclasses, plus upcasters.

Stored events carry a stable type name such as ``"candidate.proposed"`` and an integer version,
never a Python path, so moving a class never breaks an old log. Reading an old version runs the
registered upcasters ``(type, from_version) -> dict -> dict`` in a loop until the payload has the
current version, and only then builds the dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, dataclass_transform

__all__ = (
    "Payload",
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


def decode_payload(type_name: str, version: int, data: dict[str, Any]) -> Payload:
    cls = payload_class(type_name)
    _, data = upcast(type_name, version, data)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # registered classes are dataclasses
    extra = set(data) - names
    if extra:
        raise ValueError(f"{type_name!r} payload has unknown fields {sorted(extra)}")
    return cls(**data)
