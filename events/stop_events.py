"""The payload types the agents record. One run is a tree of these under its ``run.started``.

Blob fields (program texts, replies, result sets) hold sha256 addresses into the store's blobs.
Fields listed as volatile depend on wall time or the machine and are left out when replay or
resume compare events; identities never depend on them.
"""

from __future__ import annotations

from typing import Any

from events.registry import Payload, payload, upcaster

__all__ = (
    "SCHEDULING_TYPES",
    "BudgetExceeded",
    "GenerationStarted",
    "ImproverDecided",
    "LMFailed",
    "LMRequested",
    "LMResponded",
    "ProgramScanned",
    "RepairProblemStarted",
    "RepairProgram",
    "SandboxBatchCompleted",
    "SandboxBatchRequested",
    "SessionCompleted",
    "SessionRequested",
    "UtilityEvaluated",
    "UtilityRequested",
    "WorkClaimed",
    "WorkRenewed",
    "session_error_kind",
)


# ---- scheduling: who does a piece of work (not compared by replay) -----------------------------


@payload("work.claimed", volatile=("worker", "expires_at", "lease_s"))
class WorkClaimed(Payload):
    """A lease on the work its cause asks for. Its identity is (work, attempt), so two workers
    claiming the same attempt collide in the store and exactly one wins."""

    attempt: int
    worker: str
    lease_s: float
    expires_at: float


@payload("work.renewed", volatile=("worker", "expires_at"))
class WorkRenewed(Payload):
    attempt: int
    worker: str
    expires_at: float


SCHEDULING_TYPES = frozenset({"work.claimed", "work.renewed"})


# ---- sandbox ------------------------------------------------------------------------------------


@payload("session.requested")
class SessionRequested(Payload):
    """Run an improver in the sandbox: ``improve_algorithm(initial_solution, utility, lm)``.

    purpose: "improve" (one improvement), "generation" (an improver on its own source, scored by
    the meta-utility), "meta_run" (one run of a candidate improver on a downstream task).
    """

    purpose: str
    improver: str
    initial_solution: str
    utility_task: str
    lm_calls: int
    responses_per_call: int
    utility_calls: int
    timeout_s: float
    seed: int


@payload("session.completed", version=2, volatile=("wall_s", "cpu_s", "stdout_tail", "traceback"))
class SessionCompleted(Payload):
    """How an improver session ended. A failed one says why: ``error`` ("Type: message"),
    ``error_kind`` (the guest's exception type, or the status such as "timeout"; "" when ok) and
    ``traceback``, the blob of the last traceback lines from the improver's own code (or None).

    Version 2 added ``error_kind`` and ``traceback``; the traceback is diagnostic detail like
    ``stdout_tail`` (and absent from version 1 logs), so replay does not compare it."""

    status: str
    solution: str | None
    error: str
    lm_calls: int
    utility_calls: int
    violations: list[str]
    wall_s: float
    cpu_s: float
    stdout_tail: str
    error_kind: str
    traceback: str | None


def session_error_kind(status: str, error: str) -> str:
    """The kind of a session's failure: the exception type for "error", else the status."""
    if status == "ok":
        return ""
    head = error.split(":", 1)[0].strip()
    if status == "error" and head and head.replace(".", "").replace("_", "").isalnum():
        return head
    return status


@upcaster("session.completed", 1)
def _session_completed_v1(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "error_kind": session_error_kind(data["status"], data.get("error") or ""), "traceback": None}


@payload("program.scanned")
class ProgramScanned(Payload):
    """Static scan of a program before it ran: one per proposal, findings by category."""

    program: str
    role: str
    findings: list[dict[str, Any]]
    categories: list[str]


@payload("sandbox.batch.requested")
class SandboxBatchRequested(Payload):
    """Score ``solution`` on ``task``'s ``split``: one sandbox job per instance."""

    task: str
    split: str
    solution: str
    seed: int


@payload(
    "sandbox.batch.completed",
    version=2,
    volatile=("results", "wall_s", "processes", "output_bytes", "output_cap_hit", "max_rss_kb", "worker_s", "queue_s"),
)
class SandboxBatchCompleted(Payload):
    """A batch's outcome: ``results`` (blob of per-instance results), ``statuses`` counted,
    ``violations``, and its facts: ``wall_s`` from the runner's claim to the results,
    ``processes`` the sandboxed processes it used (1 + a fresh one after each stopped instance),
    ``output_bytes`` the guest wrote, ``output_cap_hit`` (an instance was stopped for output),
    ``max_rss_kb`` the peak RSS of its processes, ``worker_s`` the seconds it held a worker and
    ``queue_s`` the seconds it waited for one. The facts are None in logs recorded before they
    were (version 1)."""

    results: str
    statuses: dict[str, int]
    violations: list[str]
    wall_s: float
    processes: int | None = None
    output_bytes: int | None = None
    output_cap_hit: bool | None = None
    max_rss_kb: int | None = None
    worker_s: float | None = None
    queue_s: float | None = None


@upcaster("sandbox.batch.completed", 1)
def _batch_completed_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 recorded no batch facts: unknown, not zero."""
    facts = ("processes", "output_bytes", "output_cap_hit", "max_rss_kb", "worker_s", "queue_s")
    return {**data, **dict.fromkeys(facts)}


# ---- language model -----------------------------------------------------------------------------


@payload("lm.requested")
class LMRequested(Payload):
    """``namespace`` and ``ordinal`` fix which sample this is: the k-th identical request at
    this causal position gets the k-th recorded answer (see ``agents.identity``)."""

    request: dict[str, Any]
    namespace: str
    ordinal: int
    cache_key: str
    purpose: str


@payload("lm.responded", volatile=("source",))
class LMResponded(Payload):
    cache_key: str
    completions: list[dict[str, Any]]
    produced_by: str
    source: str


@payload("lm.failed", version=2)
class LMFailed(Payload):
    """A request that got no answer. ``kind``: "auth" / "model" / "request" / "quota" (fatal:
    the run stops asking the model), "timeout" / "connection" / "rate_limit" / "server" /
    "malformed" (transient, retries exhausted), "skipped" (not sent: the run had already hit a
    fatal error). ``status`` is the endpoint's HTTP status when there was one."""

    error: str
    kind: str
    status: int | None = None
    fatal: bool = False


@upcaster("lm.failed", 1)
def _lm_failed_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 recorded the exception class name as ``kind`` and no status."""
    fatal = data.get("kind") == "LMFatalError"
    return {**data, "status": None, "fatal": fatal}


@payload("budget.exceeded")
class BudgetExceeded(Payload):
    """A request refused because a host-side budget was spent (the guest got an error)."""

    resource: str
    used: int
    limit: int
    detail: str


# ---- utilities ----------------------------------------------------------------------------------


@payload("utility.requested")
class UtilityRequested(Payload):
    """Score ``solution`` on ``task`` ("meta" for the meta-utility, "humaneval/<id>" for checks)."""

    task: str
    split: str
    solution: str
    seed: int


@payload("utility.evaluated", volatile=("outcomes",))
class UtilityEvaluated(Payload):
    task: str
    split: str
    utility: float
    detail: dict[str, Any]
    outcomes: str | None


# ---- the STOP loop --------------------------------------------------------------------------------


@payload("generation.started")
class GenerationStarted(Payload):
    generation: int
    improver: str
    parent: str | None


@payload("improver.decided")
class ImproverDecided(Payload):
    generation: int
    candidate: str | None
    parent: str
    adopted: bool
    reason: str
    meta_val: float | None
    meta_test: float | None


# ---- self-repair ----------------------------------------------------------------------------------


@payload("repair.problem")
class RepairProblemStarted(Payload):
    problem: str
    n_p: int
    n_fr: int


@payload("repair.program")
class RepairProgram(Payload):
    """A program in a problem's repair tree: an initial sample or a repair of ``parent``."""

    problem: str
    kind: str
    program: str
    parent: str | None
    feedback: str | None
    tokens: int
