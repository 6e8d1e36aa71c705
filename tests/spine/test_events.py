"""Events: canonical encoding, deterministic identity, typed payloads and upcasting."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import CanonicalError, canonical_json, event_id, make_event, payload, upcaster
from events.codec import normalise
from events.registry import Payload, decode_payload
from events.types import Note, RunStarted

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_roundtrip_is_exact(value: object) -> None:
    """Reading a value back gives exactly the value, floats bit for bit."""
    text = canonical_json(value)
    again = normalise(value)
    assert canonical_json(again) == text
    assert again == value or (isinstance(value, float) and math.copysign(1, value) == math.copysign(1, again))


def test_canonical_rejects_nan_and_infinity() -> None:
    with pytest.raises(CanonicalError):
        canonical_json({"x": float("nan")})
    with pytest.raises(CanonicalError):
        canonical_json([float("inf")])


def test_canonical_sorts_keys_and_floats_use_shortest_repr() -> None:
    assert canonical_json({"b": 0.1, "a": [1, 2.5e-300]}) == '{"a":[1,2.5e-300],"b":0.1}'


def test_identity_is_stable_across_processes() -> None:
    """The same (run, cause, type, key) gives the same id in a fresh interpreter."""
    here = event_id("run-x", "cause-y", "note", "3")
    code = "from events import event_id; print(event_id('run-x', 'cause-y', 'note', '3'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here


def test_identity_depends_on_every_part() -> None:
    base = event_id("r", "c", "t", "0")
    assert (
        len(
            {
                base,
                event_id("r2", "c", "t", "0"),
                event_id("r", "c2", "t", "0"),
                event_id("r", "c", "t2", "0"),
                event_id("r", "c", "t", "1"),
            }
        )
        == 5
    )


def test_typed_payload_roundtrip() -> None:
    root = make_event("r", RunStarted("demo", 7, {"a": [1, 2]}, {"cpus": 2}), cause=None, key=0)
    ev = make_event("r", Note("hello", {"x": 1.5}), cause=root, key=0)
    assert ev.causation_id == root.id
    assert ev.data == Note("hello", {"x": 1.5})
    assert root.comparable()["payload"] == {"command": "demo", "seed": 7, "config": {"a": [1, 2]}}


@payload("test.widget", version=2)
class Widget(Payload):
    name: str
    size_mm: int


@upcaster("test.widget", 1)
def _widget_v1_to_v2(data: dict) -> dict:
    """Version 1 stored ``size_cm``; version 2 stores millimetres."""
    data["size_mm"] = data.pop("size_cm") * 10
    return data


def test_upcasting_reads_old_versions() -> None:
    old = decode_payload("test.widget", 1, {"name": "w", "size_cm": 3})
    assert old == Widget("w", 30)
    with pytest.raises(ValueError, match="newer"):
        decode_payload("test.widget", 3, {"name": "w", "size_mm": 1})


@given(st.text(), st.one_of(st.none(), st.text()), st.text(), json_values)
def test_body_json_is_the_canonical_body(run_id: str, cause: str | None, key: str, value: object) -> None:
    """The fast body encoding equals the canonical JSON of the body, byte for byte."""
    ev = make_event(run_id, Note("t", {"v": value}), cause=cause, key=key)
    assert ev.body_json == canonical_json(ev.body())
