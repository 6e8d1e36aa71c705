"""Inspection speed on a 100k-event synthetic ``stop self-improve`` log.

Figures: the causal-tree fold, the lineage projection and the blob-free audit (chain walk,
LM costs, violations) over one run's events in memory, and a full ``audit_run`` (with every
blob fetched) against a SQLite store. Events per second, so the figure does not depend on N.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import anyio

from bench.harness import Figure, measure
from events import content_key, make_event, sha256_hex
from events.model import Event
from events.stop_events import (
    GenerationStarted,
    ImproverDecided,
    LMRequested,
    LMResponded,
    ProgramScanned,
    SessionCompleted,
    SessionRequested,
    UtilityEvaluated,
    UtilityRequested,
)
from events.types import RunStarted
from replay.audit import audit_log, audit_run
from replay.lineage import lineage_from_tree
from replay.runs import RunLog
from replay.tree import build_tree
from store import MemoryStore
from store.sqlite import SqliteStore

__all__ = ("run", "synthetic_run")

RUN = "bench-inspect"


def synthetic_run(n_events: int = 100_000) -> tuple[list[Event], list[str]]:
    """About ``n_events`` events: generations of (scan, 4 LM calls, 4 candidates, decision)."""
    blobs: list[str] = []

    def blob(text: str) -> str:
        blobs.append(text)
        return sha256_hex(text.encode())

    events: list[Event] = []

    def ev(data: object, cause: Event | None, key: str) -> Event:
        e = make_event(RUN, data, cause=cause, key=key)  # type: ignore[arg-type]  # synthetic payloads
        events.append(e)
        return e

    root = ev(
        RunStarted(command="self-improve", seed=0, config={"lm": {"prices": {"m": [1.0, 2.0]}}}, host={}), None, "root"
    )
    cause = root
    improver = blob("def improve_algorithm(s, u, lm):\n    return s\n")
    g = 0
    while len(events) < n_events:
        gen = ev(GenerationStarted(generation=g, improver=improver, parent=None), cause, f"gen/{g}")
        sess = ev(
            SessionRequested(
                purpose="generation",
                improver=improver,
                initial_solution=improver,
                utility_task="meta",
                lm_calls=4,
                responses_per_call=1,
                utility_calls=4,
                timeout_s=60.0,
                seed=g,
            ),
            gen,
            "generation",
        )
        cats = ["sandbox_tampering"] if g % 50 == 0 else []
        ev(
            ProgramScanned(
                program=improver,
                role="improver",
                findings=[{"category": c, "detail": "x", "line": 1} for c in cats],
                categories=cats,
            ),
            sess,
            "scan",
        )
        best = improver
        for i in range(4):
            req = {"model": "m", "messages": [{"role": "user", "content": f"{g}/{i}"}], "n": 1}
            lr = ev(
                LMRequested(request=req, namespace="n", ordinal=0, cache_key=f"{g}/{i}", purpose="improve"),
                sess,
                content_key(req, 0),
            )
            text = blob(f"def improve_algorithm(s, u, lm):\n    return s  # {g}/{i}\n")
            ev(
                LMResponded(
                    cache_key=f"{g}/{i}",
                    completions=[
                        {"text": text, "prompt_tokens": 100, "completion_tokens": 50, "finish_reason": "stop"}
                    ],
                    produced_by="m",
                    source="live" if i % 2 else "cache",
                ),
                lr,
                "answer",
            )
            ur = ev(UtilityRequested(task="meta", split="val", solution=text, seed=0), sess, f"u{i}#0")
            ev(
                UtilityEvaluated(
                    task="meta", split="val", utility=(g % 10 + i) / 20, detail={"test": 0.1}, outcomes=None
                ),
                ur,
                "result",
            )
            best = text
        ev(
            SessionCompleted(
                status="ok",
                solution=best,
                error="",
                lm_calls=4,
                utility_calls=4,
                violations=[],
                wall_s=1.0,
                cpu_s=1.0,
                stdout_tail="",
                error_kind="",
                traceback=None,
            ),
            sess,
            "result",
        )
        cause = ev(
            ImproverDecided(
                generation=g,
                candidate=best,
                parent=improver,
                adopted=g % 3 == 0,
                reason="",
                meta_val=0.5,
                meta_test=0.4,
            ),
            gen,
            "decision",
        )
        if g % 3 == 0:
            improver = best
        g += 1
    return events, blobs


def run() -> list[Figure]:
    events, blobs = synthetic_run()

    async def stored_events() -> list[Event]:
        store = MemoryStore()
        return await store.append(events, blobs=blobs)

    chained = anyio.run(stored_events)
    n = len(chained)
    t_fold = measure(lambda: build_tree(chained), repeat=3)
    tree = build_tree(chained)
    t_lineage = measure(lambda: lineage_from_tree(tree), repeat=3)
    t_audit = measure(lambda: audit_log(RunLog(RUN, chained)), repeat=3)

    async def sqlite_audit(path: Path) -> float:
        async with await SqliteStore.open(path, synchronous="OFF") as store:
            await store.append(events, blobs=blobs)
            start = time.perf_counter()
            report = await audit_run(store, RUN)
            elapsed = time.perf_counter() - start
            assert report.ok, report.chain
            return elapsed

    with tempfile.TemporaryDirectory() as tmp:
        t_full = anyio.run(sqlite_audit, Path(tmp) / "bench.db")
    return [
        Figure("inspect.fold_tree", n / t_fold, "events/s", ">=", 200_000, f"{n} events"),
        Figure("inspect.lineage", n / t_lineage, "events/s", ">=", 100_000, f"{n} events"),
        Figure("inspect.audit_log", n / t_audit, "events/s", ">=", 50_000, "chain + costs + violations"),
        Figure("inspect.audit_run_sqlite", n / t_full, "events/s", ">=", 10_000, "read + audit + one query per blob"),
    ]


if __name__ == "__main__":
    from bench.harness import format_line

    for fig in run():
        print(format_line(fig), fig.note)
