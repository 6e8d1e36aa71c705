"""Batches (one sandboxed process per batch) give the utilities that one job per instance gave.

``tests/fixtures/utilities_before_batch.json`` was recorded with main's code before batches
existed (one sandbox job per instance), at a relaxed 10 s limit so machine load cannot make an
instance time out: every seed's and strong solution's utility and per-instance scores, as exact
float hex. The same evaluations through batches must match bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tasks_programs import STRONG
from tasks_sandbox_helpers import evaluate_many

from tasks import Evaluation, all_tasks

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "utilities_before_batch.json"
RELAXED_S = 10.0


@pytest.fixture(scope="module")
def batched() -> dict[str, Evaluation]:
    specs, keys = [], []
    for t in all_tasks():
        relaxed = t.with_options(time_limit_s=RELAXED_S)
        for split in ("val", "test"):
            for kind, program in (("seed", t.seed_solution), ("strong", STRONG[t.name])):
                specs.append((relaxed, program, split, None))
                keys.append(f"{t.name}/{split}/{kind}")
    return dict(zip(keys, evaluate_many(specs), strict=True))


def test_every_recorded_utility_is_reproduced_bit_for_bit(batched: dict[str, Evaluation]) -> None:
    recorded = json.loads(FIXTURE.read_text())
    assert set(recorded) == set(batched)
    assert len(recorded) == 4 * len(all_tasks())
    for key, want in recorded.items():
        got = batched[key]
        assert got.utility.hex() == want["utility"], key
        assert [o.score.hex() for o in got.instances] == want["scores"], key
        assert [o.error_kind for o in got.instances] == want["errors"], key
