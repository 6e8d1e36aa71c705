"""Who reacts to which event: the routing of the agents, declared beside the payload types.

Every project event type has one row in ``ROLES`` saying what it is to the agents: which
request type it answers (it is recorded as a child of that request), whether it ends the run,
which agents it triggers, and whether the workflows decide from it. The sets the agents
subscribe to and wait for are derived from this table, so a new event type is routed where it
is declared, not by editing string sets scattered over the agents; a test fails when a
registered type has no row.

The names in ``agents`` are the agents of ``agents.launch.AGENTS``; ``events`` never imports
``agents`` (the arrow points the other way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from events.checkpoint_events import CheckpointSigned
from events.lm_events import BudgetExhausted, BudgetRaised, LMEndpointObserved
from events.stop_events import (
    BudgetExceeded,
    GenerationStarted,
    ImproverDecided,
    LMFailed,
    LMRequested,
    LMResponded,
    ProgramScanned,
    RepairProblemStarted,
    RepairProgram,
    SandboxBatchCompleted,
    SandboxBatchRequested,
    SessionCompleted,
    SessionRequested,
    UtilityEvaluated,
    UtilityRequested,
    WorkClaimed,
    WorkRenewed,
)
from events.types import Note, RunFailed, RunFinished, RunStarted

__all__ = (
    "EVALUATOR",
    "LM_ANSWERS",
    "META_EVALUATOR",
    "PROPOSER",
    "ROLES",
    "RUN_ENDS",
    "RUN_STOPS",
    "SANDBOX_RUNNER",
    "WORKFLOW_STEPS",
    "WORKFLOW_VIEW",
    "Role",
    "answer_types",
    "triggers",
)

PROPOSER = "proposer"
SANDBOX_RUNNER = "sandbox-runner"
EVALUATOR = "evaluator"
META_EVALUATOR = "meta-evaluator"


@dataclass(frozen=True)
class Role:
    """What one event type is to the agents."""

    #: The request type this type answers: it is recorded as a child of the request, and the
    #: first one recorded is the answer (a later one loses the race and is refused).
    answers: str | None = None
    #: A run's end: nothing more is due (``run.finished``, ``run.failed``).
    ends_run: bool = False
    #: Where a run stops: its end, or a spend cap (resumable with a raised cap).
    stops_run: bool = False
    #: The agents whose subscription this type triggers.
    agents: frozenset[str] = frozenset()
    #: The workflows decide from it: it is part of their projection (``agents.run_view``).
    workflow: bool = False
    #: The workflows write it as a step of their own: a request caused by it is a workflow's
    #: (its answer moves the workflow), not a session's.
    workflow_step: bool = False


def _agents(*names: str) -> frozenset[str]:
    return frozenset(names)


#: Every project event type and its role. Types absent from every set (scheduling, notes,
#: checkpoints, scans, endpoint facts) are recorded for the record and read by inspection commands only.
ROLES: Mapping[str, Role] = {
    # the run
    RunStarted.TYPE: Role(agents=_agents(META_EVALUATOR), workflow=True, workflow_step=True),
    RunFinished.TYPE: Role(ends_run=True, stops_run=True, workflow=True),
    RunFailed.TYPE: Role(ends_run=True, stops_run=True, workflow=True),
    Note.TYPE: Role(),
    CheckpointSigned.TYPE: Role(),  # signed for audit; no agent reacts to it
    # scheduling
    WorkClaimed.TYPE: Role(),
    WorkRenewed.TYPE: Role(),
    # sandbox
    SessionRequested.TYPE: Role(agents=_agents(SANDBOX_RUNNER), workflow=True),
    SessionCompleted.TYPE: Role(answers=SessionRequested.TYPE, agents=_agents(META_EVALUATOR), workflow=True),
    ProgramScanned.TYPE: Role(),
    SandboxBatchRequested.TYPE: Role(agents=_agents(SANDBOX_RUNNER)),
    SandboxBatchCompleted.TYPE: Role(answers=SandboxBatchRequested.TYPE, agents=_agents(EVALUATOR)),
    # language model
    LMRequested.TYPE: Role(agents=_agents(PROPOSER), workflow=True),
    LMResponded.TYPE: Role(answers=LMRequested.TYPE, agents=_agents(META_EVALUATOR), workflow=True),
    LMFailed.TYPE: Role(answers=LMRequested.TYPE, agents=_agents(META_EVALUATOR), workflow=True),
    BudgetExceeded.TYPE: Role(),
    BudgetExhausted.TYPE: Role(stops_run=True),
    BudgetRaised.TYPE: Role(),
    LMEndpointObserved.TYPE: Role(),
    # utilities
    UtilityRequested.TYPE: Role(agents=_agents(EVALUATOR, META_EVALUATOR), workflow=True),
    UtilityEvaluated.TYPE: Role(answers=UtilityRequested.TYPE, agents=_agents(META_EVALUATOR), workflow=True),
    # the STOP loop
    GenerationStarted.TYPE: Role(workflow=True, workflow_step=True),
    ImproverDecided.TYPE: Role(workflow=True),
    # self-repair
    RepairProblemStarted.TYPE: Role(workflow=True, workflow_step=True),
    RepairProgram.TYPE: Role(workflow=True, workflow_step=True),
    # audit: written by the checkpoint agent for ``stop audit``; no agent reacts to one
}


def _where(test: str) -> frozenset[str]:
    return frozenset(t for t, role in ROLES.items() if getattr(role, test))


def answer_types(request_type: str) -> frozenset[str]:
    """The types that answer a ``request_type`` (empty for a type that is not a request)."""
    return frozenset(t for t, role in ROLES.items() if role.answers == request_type)


def triggers(agent: str) -> frozenset[str]:
    """The types ``agent`` subscribes to."""
    return frozenset(t for t, role in ROLES.items() if agent in role.agents)


#: A run's end (``run.finished``, ``run.failed``).
RUN_ENDS = _where("ends_run")
#: What waiting for a run to stop waits for: its end or a spend cap.
RUN_STOPS = _where("stops_run")
#: The answers to an LM request.
LM_ANSWERS = answer_types(LMRequested.TYPE)
#: What the workflows decide from: their projection's types.
WORKFLOW_VIEW = _where("workflow")
#: Steps the workflows write, under which a request is the workflow's own.
WORKFLOW_STEPS = _where("workflow_step")
