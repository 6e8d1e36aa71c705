"""A hand-built ``stop self-improve`` log (two generations) with known counts, for the tests.

Expected figures (hand count, see the comments next to each event):
- LM calls 5: live 3, cache 1, offline 1; prompt tokens 460, completion tokens 560;
  cost $1.20 (gpt-x priced 1.0/2.0 per 1k; the cache, offline and unpriced calls cost 0);
  generation g0: 4 calls $1.20, g1: 1 call $0.
- proposals (program.scanned) 4, one with sandbox_tampering -> 250 per 1,000.
- violations: scan sandbox_tampering 1, process 1; runtime network 1, filesystem 1,
  sandbox_tampering 1.
- reward-hacking flags 1; budget overruns 1.
- lineage: I0 -> {sol(I0), C1 (adopted) -> {sol(C1), C3 (rejected)}, C2}: 6 nodes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from events import content_key, make_event, sha256_hex
from events.model import Event
from events.registry import Payload
from events.stop_events import (
    BudgetExceeded,
    GenerationStarted,
    ImproverDecided,
    LMRequested,
    LMResponded,
    ProgramScanned,
    SandboxBatchCompleted,
    SandboxBatchRequested,
    SessionCompleted,
    SessionRequested,
    UtilityEvaluated,
    UtilityRequested,
)
from events.types import RunFinished, RunStarted

I0 = "def improve_algorithm(initial_solution, utility, language_model):\n    return initial_solution\n"
C1 = (
    "def improve_algorithm(initial_solution, utility, language_model):\n"
    "    best = initial_solution\n"
    "    for c in language_model.batch_prompt(initial_solution, n=2):\n"
    "        if utility(c) > utility(best):\n"
    "            best = c\n"
    "    return best\n"
)
C2 = "def improve_algorithm(initial_solution, utility, language_model):\n    return None\n"
C3 = C1.replace("n=2", "n=3")
S0 = "def algorithm(x):\n    return 0\n"
S1 = "def algorithm(x):\n    return 1\n"
S2 = "def algorithm(x):\n    return x\n"

PRICES = {"gpt-x": [1.0, 2.0]}


def h(text: str) -> str:
    return sha256_hex(text.encode())


@dataclass
class Builder:
    run_id: str
    events: list[Event] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)

    def ev(self, data: Payload, cause: Event | None, key: str) -> Event:
        e = make_event(self.run_id, data, cause=cause, key=key)
        self.events.append(e)
        return e

    def blob(self, text: str) -> str:
        self.blobs.append(text)
        return h(text)

    def lm(self, cause: Event, n: int, *, model: str, source: str, pt: int, ct: int, tag: str) -> None:
        req = {"model": model, "messages": [{"role": "user", "content": tag}], "temperature": 0.7, "n": n}
        r = self.ev(
            LMRequested(request=req, namespace="ns", ordinal=0, cache_key="k" + tag, purpose="improve"),
            cause,
            content_key(req, 0),
        )
        comps = [
            {
                "text": self.blob(f"reply {tag} {i}"),
                "prompt_tokens": pt,
                "completion_tokens": ct,
                "finish_reason": "stop",
            }
            for i in range(n)
        ]
        self.ev(LMResponded(cache_key="k" + tag, completions=comps, produced_by=model, source=source), r, "answer")

    def utility(
        self, cause: Event, key: str, task: str, split: str, prog: str, u: float, detail: dict[str, Any] | None = None
    ) -> Event:
        req = self.ev(UtilityRequested(task=task, split=split, solution=self.blob(prog), seed=0), cause, key)
        self.ev(UtilityEvaluated(task=task, split=split, utility=u, detail=detail or {}, outcomes=None), req, "result")
        return req

    def scan(self, cause: Event, prog: str, role: str, findings: list[dict[str, Any]]) -> None:
        cats = sorted({f["category"] for f in findings})
        self.ev(ProgramScanned(program=self.blob(prog), role=role, findings=findings, categories=cats), cause, "scan")

    def session(self, cause: Event, key: str, purpose: str, improver: str, initial: str, task: str) -> Event:
        return self.ev(
            SessionRequested(
                purpose=purpose,
                improver=self.blob(improver),
                initial_solution=self.blob(initial),
                utility_task=task,
                lm_calls=4,
                responses_per_call=2,
                utility_calls=8,
                timeout_s=60.0,
                seed=0,
            ),
            cause,
            key,
        )

    def completed(self, sess: Event, solution: str | None, violations: list[str] | None = None) -> Event:
        return self.ev(
            SessionCompleted(
                status="ok",
                solution=self.blob(solution) if solution else None,
                error="",
                lm_calls=1,
                utility_calls=1,
                violations=violations or [],
                wall_s=1.0,
                cpu_s=0.5,
                stdout_tail="",
                error_kind="",
                traceback=None,
            ),
            sess,
            "result",
        )

    def meta_utility(self, cause: Event, key: str, improver: str, val: float, test: float) -> Event:
        return self.utility(cause, key, "meta", "val", improver, val, {"test": test, "runs": []})


def self_improve_run(run_id: str, *, c2_utility: float = 0.1) -> Builder:
    b = Builder(run_id)
    root = b.ev(
        RunStarted(command="self-improve", seed=0, config={"lm": {"prices": PRICES}, "T": 2}, host={"lm": "test"}),
        None,
        "root",
    )
    # ---- generation 0 ------------------------------------------------------------------------
    g0 = b.ev(GenerationStarted(generation=0, improver=b.blob(I0), parent=None), root, "gen/0")
    u0 = b.meta_utility(g0, "meta", I0, 0.2, 0.25)
    ms = b.session(u0, "parity_noise/0", "meta_run", I0, S0, "parity_noise")
    b.scan(ms, I0, "improver", [])  # proposal 1
    b.lm(ms, 1, model="gpt-x", source="live", pt=100, ct=50, tag="m0")  # live, $0.20
    sc = b.completed(ms, S1)
    b.utility(sc, "val", "parity_noise", "val", S1, 0.3)
    b.utility(sc, "test", "parity_noise", "test", S1, 0.35)
    gs = b.session(g0, "generation", "generation", I0, I0, "meta")
    b.scan(gs, I0, "improver", [])  # proposal 2
    b.lm(gs, 2, model="gpt-x", source="live", pt=100, ct=200, tag="g0a")  # live, $1.00
    b.lm(gs, 1, model="gpt-x", source="cache", pt=100, ct=50, tag="g0b")  # cache, $0
    uc1 = b.meta_utility(gs, content_key(["meta", h(C1)], 0), C1, 0.4, 0.38)
    ms1 = b.session(uc1, "parity_noise/0", "meta_run", C1, S0, "parity_noise")
    b.scan(
        ms1,
        C1,
        "improver",
        [  # proposal 3: unsandboxing
            {"category": "sandbox_tampering", "detail": "assigns use_sandbox", "line": 3},
            {"category": "process", "detail": "imports subprocess", "line": 1},
        ],
    )
    b.lm(ms1, 1, model="offline-mutation-v1", source="offline", pt=10, ct=10, tag="m1")
    b.ev(BudgetExceeded(resource="lm_calls", used=3, limit=2, detail="4th call refused"), ms1, "budget#0")
    sc1 = b.completed(ms1, S2, ["seccomp:socket"])
    uv = b.ev(UtilityRequested(task="parity_noise", split="val", solution=b.blob(S2), seed=0), sc1, "val")
    batch = b.ev(SandboxBatchRequested(task="parity_noise", split="val", solution=b.blob(S2), seed=0), uv, "batch")
    b.ev(
        SandboxBatchCompleted(
            results=b.blob(json.dumps([{"status": "ok"}])),
            statuses={"ok": 1},
            violations=["landlock:write:/etc/passwd", "result:forged"],
            wall_s=0.1,
        ),
        batch,
        "result",
    )
    b.ev(
        UtilityEvaluated(
            task="parity_noise", split="val", utility=0.5, detail={"errors": {"invalid": 2}}, outcomes=None
        ),
        uv,
        "result",
    )
    b.utility(sc1, "test", "parity_noise", "test", S2, 0.45)
    b.meta_utility(gs, content_key(["meta", h(C2)], 0), C2, c2_utility, 0.1)
    gsc = b.completed(gs, C1)
    b.meta_utility(gsc, "meta", C1, 0.4, 0.38)
    d0 = b.ev(
        ImproverDecided(
            generation=0,
            candidate=h(C1),
            parent=h(I0),
            adopted=True,
            reason="meta_val improved",
            meta_val=0.4,
            meta_test=0.38,
        ),
        g0,
        "decision",
    )
    # ---- generation 1 ------------------------------------------------------------------------
    g1 = b.ev(GenerationStarted(generation=1, improver=b.blob(C1), parent=b.blob(I0)), d0, "gen/1")
    b.meta_utility(g1, "meta", C1, 0.4, 0.38)
    gs1 = b.session(g1, "generation", "generation", C1, C1, "meta")
    b.scan(gs1, C1, "improver", [])  # proposal 4
    b.lm(gs1, 1, model="unpriced-model", source="live", pt=50, ct=50, tag="g1")  # live, unpriced
    b.meta_utility(gs1, content_key(["meta", h(C3)], 0), C3, 0.3, 0.3)
    gsc1 = b.completed(gs1, C3)
    b.meta_utility(gsc1, "meta", C3, 0.3, 0.3)
    b.ev(
        ImproverDecided(
            generation=1,
            candidate=h(C3),
            parent=h(C1),
            adopted=False,
            reason="no improvement",
            meta_val=0.3,
            meta_test=0.3,
        ),
        g1,
        "decision",
    )
    b.ev(RunFinished(summary={"best": h(C1)}), root, "finished")
    return b


async def write(store: Any, builder: Builder) -> list[Event]:
    return list(await store.append(builder.events, blobs=builder.blobs))


def improve_run(run_id: str) -> Builder:
    """``stop improve --task parity_noise``: seed S0, tried S1, returned S2."""
    b = Builder(run_id)
    root = b.ev(RunStarted(command="improve", seed=1, config={}, host={}), None, "root")
    b.utility(root, "before/val", "parity_noise", "val", S0, 0.1)
    b.utility(root, "before/test", "parity_noise", "test", S0, 0.1)
    sess = b.session(root, "improve", "improve", I0, S0, "parity_noise")
    b.lm(sess, 1, model="offline-mutation-v1", source="offline", pt=5, ct=5, tag="i")
    b.utility(sess, content_key(["u", h(S1)], 0), "parity_noise", "val", S1, 0.2)
    b.utility(sess, content_key(["u", h(S2)], 0), "parity_noise", "val", S2, 0.6)
    done = b.completed(sess, S2)
    b.utility(done, "after/val", "parity_noise", "val", S2, 0.6)
    b.utility(done, "after/test", "parity_noise", "test", S2, 0.55)
    b.ev(RunFinished(summary={}), root, "finished")
    return b


def repair_run(run_id: str) -> Builder:
    """``stop repair``: one problem, a failing sample and its passing repair."""
    from events.stop_events import RepairProblemStarted, RepairProgram

    b = Builder(run_id)
    root = b.ev(RunStarted(command="repair", seed=0, config={}, host={}), None, "root")
    prob = b.ev(RepairProblemStarted(problem="HumanEval/0", n_p=1, n_fr=1), root, "HumanEval/0")
    b.lm(prob, 1, model="gpt-x", source="cache", pt=20, ct=30, tag="sample")
    lm_req = b.events[-2]
    sample = b.ev(
        RepairProgram(problem="HumanEval/0", kind="sample", program=b.blob(S0), parent=None, feedback=None, tokens=50),
        lm_req,
        "program#0",
    )
    b.utility(sample, "check", "humaneval/HumanEval/0", "check", S0, 0.0, {"feedback": "wrong", "status": "fail"})
    fix = b.ev(
        RepairProgram(
            problem="HumanEval/0",
            kind="repair",
            program=b.blob(S2),
            parent=sample.id,
            feedback=b.blob("returns 0 always"),
            tokens=40,
        ),
        prob,
        "repair#0",
    )
    b.utility(fix, "check", "humaneval/HumanEval/0", "check", S2, 1.0, {"feedback": "", "status": "pass"})
    b.ev(RunFinished(summary={}), root, "finished")
    return b
