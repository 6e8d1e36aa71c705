"""The routing table (``events.routing``) covers every event type and agrees with recorded logs;
payload types are registered by importing ``events``, deterministically."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from events.catalogue import load_all
from events.routing import ROLES, RUN_ENDS, RUN_STOPS, WORKFLOW_VIEW, answer_types, triggers

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "quickstart-v1.jsonl.gz"
AGENTS = ("proposer", "sandbox-runner", "evaluator", "meta-evaluator")


def test_every_registered_type_has_exactly_one_role_row() -> None:
    """A new payload type cannot be added without deciding how the agents route it."""
    registered = set(load_all())
    assert set(ROLES) == registered, (sorted(registered - set(ROLES)), sorted(set(ROLES) - registered))


def test_answers_point_at_request_types_that_are_not_answers_themselves() -> None:
    for name, role in ROLES.items():
        if role.answers is None:
            continue
        assert role.answers in ROLES, name
        assert ROLES[role.answers].answers is None, f"{name} answers {role.answers}, itself an answer"
        assert name in answer_types(role.answers)
    assert RUN_ENDS <= RUN_STOPS
    assert RUN_ENDS <= WORKFLOW_VIEW


def test_every_agent_has_triggers_and_every_trigger_is_a_known_agent() -> None:
    for agent in AGENTS:
        assert triggers(agent), agent
    named = {a for role in ROLES.values() for a in role.agents}
    assert named == set(AGENTS)
    from agents.launch import AGENTS as LAUNCHED

    assert set(LAUNCHED) == set(AGENTS)


def test_a_recorded_log_answers_each_request_with_the_declared_types() -> None:
    """On real data (the golden log): each child of a request of a declared answer type is caused
    by a request of the type it declares; the run has one end, under its root."""
    events = [row["event"] for row in map(json.loads, gzip.open(GOLDEN, "rt", encoding="utf-8")) if "event" in row]
    by_id = {e["id"]: e for e in events}
    answered = 0
    for ev in events:
        role = ROLES[ev["type"]]
        cause = by_id.get(ev["causation_id"] or "")
        if role.answers is not None:
            assert cause is not None and cause["type"] == role.answers, ev["type"]
            answered += 1
    assert answered > 10
    ends = [e for e in events if e["type"] in RUN_ENDS]
    assert len(ends) == 1 and ends[0]["causation_id"] == events[0]["id"]


def test_importing_events_registers_every_project_type() -> None:
    """Registration is an import side effect of ``events`` alone, the same in any process: a fresh
    interpreter that imports only ``events`` knows every type the catalogue lists."""
    code = "import events, events.registry as r; print('\\n'.join(r.registered_types()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == sorted(load_all())
