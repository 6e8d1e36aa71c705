"""docs/events.md is the registry's catalogue, current; every payload type is in it."""

from __future__ import annotations

from pathlib import Path

from events.catalogue import load_all, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_catalogue_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "docs/events.md is out of date: run `make docs`"


def test_catalogue_names_every_registered_type() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in load_all() if f"### `{name}` " not in text]
    assert not missing, missing
