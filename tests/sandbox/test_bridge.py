"""Improver sessions: the request channel, occurrences, BridgeError, no slot deadlock."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from sandbox_helpers import skip_unless

from sandbox import BridgeError, Job, LanguageModelProxy, SandboxConfig, SandboxPool, UtilityProxy

THREADED_IMPROVER = """
import threading
from concurrent.futures import ThreadPoolExecutor

def improve_algorithm(initial_solution, utility, language_model):
    def score(text):
        return utility(text)
    with ThreadPoolExecutor(4) as ex:
        scores = list(ex.map(score, ["a", "bb", "a", "ccc", "a", "bb"]))
    replies = language_model.prompt("expert", "improve this", n_responses=3, temperature=0.5)
    batch = language_model.batch_prompt("expert", ["m1", "m2"])
    try:
        language_model.prompt("expert", "one too many")
        refused = None
    except Exception as exc:
        refused = f"{type(exc).__name__}: {exc}"
    try:
        utility.budget = 10 ** 6
        tampered = "BUDGET CHANGED"
    except AttributeError:
        tampered = "read-only"
    return {"scores": scores, "replies": replies, "batch": batch, "refused": refused,
            "tampered": tampered, "description": utility.description,
            "lm_budget_view": language_model.budget}
"""


@pytest.mark.anyio
async def test_threaded_guest_gets_correct_answers_and_occurrences() -> None:
    skip_unless("any")
    calls: list[tuple[str, Any, int]] = []
    lm_calls = 0

    async def handler(kind: str, body: dict[str, Any], occurrence: int) -> Any:
        nonlocal lm_calls
        calls.append((kind, body, occurrence))
        if kind == "utility":
            return len(body["solution"]) / 10
        lm_calls += 1
        if lm_calls > 2:
            raise BridgeError("language model budget exhausted (2 calls)")
        if kind == "lm.prompt":
            return [f"reply {k} to {body['message']}" for k in range(body["n_responses"])]
        return [f"batch reply to {m}" for m in body["messages"]]

    async with SandboxPool(SandboxConfig(workers=1)) as pool:
        r = await pool.run_session(
            Job(
                program=THREADED_IMPROVER,
                function="improve_algorithm",
                wall_timeout_s=60,
                seed=7,
                args=[
                    "seed solution",
                    UtilityProxy(description="score it", budget=25),
                    LanguageModelProxy(budget=4, max_responses_per_call=6),
                ],
            ),
            on_request=handler,
        )
    assert r.status == "ok", (r.error, r.traceback)
    v = r.value
    assert v["scores"] == [0.1, 0.2, 0.1, 0.3, 0.1, 0.2]
    assert v["replies"] == [f"reply {k} to improve this" for k in range(3)]
    assert v["batch"] == ["batch reply to m1", "batch reply to m2"]
    assert v["refused"] == "BridgeError: language model budget exhausted (2 calls)"
    assert v["tampered"] == "read-only"
    assert v["description"] == "score it"
    utility_occ = sorted((c[1]["solution"], c[2]) for c in calls if c[0] == "utility")
    assert utility_occ == [("a", 0), ("a", 1), ("a", 2), ("bb", 0), ("bb", 1), ("ccc", 0)]
    assert [c[0] for c in calls if c[0] != "utility"] == ["lm.prompt", "lm.batch_prompt", "lm.prompt"]
    assert calls[-1][1]["n_responses"] == 1


NESTED_IMPROVER = """
def improve_algorithm(initial_solution, utility, language_model):
    best = max(["def f():\\n    return 1\\n", "def f():\\n    return 5\\n"], key=utility)
    return best
"""


@pytest.mark.anyio
async def test_sessions_do_not_occupy_warm_slots() -> None:
    """Three sessions whose utility runs nested jobs on a 2-worker pool: no deadlock."""
    skip_unless("any")
    async with SandboxPool(SandboxConfig(workers=2)) as pool:

        async def handler(kind: str, body: dict[str, Any], occurrence: int) -> Any:
            r = await pool.run(Job(program=body["solution"], function="f"))
            return float(r.value) if r.ok else 0.0

        results: list[Any] = []

        async def session(k: int) -> None:
            r = await pool.run_session(
                Job(
                    program=NESTED_IMPROVER,
                    function="improve_algorithm",
                    wall_timeout_s=60,
                    args=["x", UtilityProxy("u", 5), LanguageModelProxy(1)],
                ),
                on_request=handler,
            )
            results.append(r)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for k in range(3):
                    tg.start_soon(session, k)
    assert [r.status for r in results] == ["ok"] * 3
    assert all(r.value == "def f():\n    return 5\n" for r in results)


@pytest.mark.anyio
async def test_proxies_refused_outside_sessions_and_handler_errors_propagate() -> None:
    skip_unless("any")
    async with SandboxPool(SandboxConfig(workers=1)) as pool:
        r = await pool.run(Job(program="def f(u):\n    return u('x')\n", function="f", args=[UtilityProxy("u", 1)]))
        assert r.status == "refused"

        async def broken(kind: str, body: dict[str, Any], occurrence: int) -> Any:
            raise RuntimeError("host bug")

        with pytest.raises(RuntimeError, match="host bug"):
            await pool.run_session(
                Job(
                    program="def f(u):\n    return u('x')\n",
                    function="f",
                    args=[UtilityProxy("u", 1)],
                    wall_timeout_s=30,
                ),
                on_request=broken,
            )
        ok = await pool.run(Job(program="def f():\n    return 1\n", function="f"))
        assert ok.status == "ok"
