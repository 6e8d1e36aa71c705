"""The self-improve workflow's decision steps (``agents.workflows``), on their own."""

from __future__ import annotations

import pytest

from agents.workflows import _adoption, _Lineage


def test_adoption_rules() -> None:
    current = {"val": 0.5, "test": 0.4}
    assert _adoption("better", {"val": 0.6, "test": 0.1}, current) == (True, "better on val")
    assert _adoption("better", {"val": 0.5, "test": 0.9}, current)[0] is False  # equal is not better
    assert _adoption("nonzero", {"val": 0.1, "test": 0.0}, current) == (True, "did not fail and scored above 0")
    assert _adoption("nonzero", {"val": 0.0, "test": 0.9}, current) == (False, "scored 0")


def test_a_decision_before_the_seed_is_scored_is_an_error_not_an_assert() -> None:
    """The check holds under ``python -O`` too: it raises, it is not an ``assert``."""
    lineage = _Lineage(improver="seed")
    with pytest.raises(RuntimeError, match="before the seed improver was scored"):
        lineage.decided(0, None, None, False, "failed")


def test_lineage_rows_follow_adoption() -> None:
    lineage = _Lineage(improver="seed")
    lineage.seed({"val": 0.2, "test": 0.1})
    lineage.decided(0, "cand1", {"val": 0.3, "test": 0.2}, True, "better on val")
    lineage.decided(1, "cand2", {"val": 0.1, "test": 0.9}, False, "not better")
    assert (lineage.improver, lineage.parent, lineage.meta) == ("cand1", "seed", {"val": 0.3, "test": 0.2})
    assert [(r["generation"], r["improver"], r["meta_val"]) for r in lineage.rows] == [
        (0, "seed", 0.2),
        (1, "cand1", 0.3),
        (2, "cand1", 0.3),
    ]
    assert lineage.rows[2]["candidate"] == "cand2" and lineage.rows[2]["candidate_meta_test"] == 0.9
