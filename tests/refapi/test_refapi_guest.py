"""The guest's ``utility`` / ``language_model`` in a real sandbox session: reference attributes,
call forms, and no attribute write (of any kind) changes what the host allows."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import BridgeError, Job, LanguageModelProxy, SandboxConfig, SandboxPool, UtilityProxy
from sandbox._layers import detect_layers

IMPROVER = """
from helpers import extract_code

F = "`" * 3

def improve_algorithm(initial_solution, utility, language_model):
    out = {"start": [utility.budget, utility.uses, utility.remaining,
                     language_model.budget, language_model.times_used, language_model.remaining]}
    tricks = {}
    def trick(name, fn):
        try:
            fn()
            tricks[name] = "no error"
        except Exception as exc:
            tricks[name] = type(exc).__name__
    trick("assign budget", lambda: setattr(utility, "budget", 10 ** 6))
    trick("assign uses", lambda: setattr(utility, "uses", -100))
    trick("assign lm budget", lambda: setattr(language_model, "budget", 10 ** 6))
    trick("assign times_used", lambda: setattr(language_model, "times_used", 0))
    trick("assign remaining", lambda: setattr(utility, "remaining", 99))
    trick("new attribute", lambda: setattr(utility, "extra", 1))
    trick("delete budget", lambda: delattr(utility, "budget"))
    trick("__dict__", lambda: utility.__dict__.update(budget=10 ** 6))
    trick("mangled slot", lambda: setattr(utility, "_budget", 10 ** 6))
    trick("object.__setattr__ slot", lambda: object.__setattr__(utility, "_budget", 10 ** 6))
    trick("object.__setattr__ lm slot", lambda: object.__setattr__(language_model, "_budget", 10 ** 6))
    trick("class property", lambda: setattr(type(utility), "budget", property(lambda self: 10 ** 6)))
    trick("fresh proxy", lambda: out.setdefault("fresh", type(utility)(utility._channel, "d", 10 ** 6)("x")))
    out["tricks"] = tricks
    out["zero"] = [utility(None), utility(""), utility.uses]
    scores = [utility("a", mode="val"), utility("bb", mode="train"), utility("ccc")]
    try:
        utility("a", mode="test")
        out["test_mode"] = "allowed"
    except ValueError as exc:
        out["test_mode"] = str(exc)
    replies = language_model.prompt("expert", "m", 2, 0.5)
    replies += language_model.prompt(expertise="expert", message="k", n_responses=1, temperature=0.1)
    replies += language_model.batch_prompt("expert", ["b1", "b2"], 0.7)
    replies += language_model.batch_prompt("expert", message_batch=["b3"], temperature=0.9)
    empty = language_model.batch_prompt("expert", [], 0.7)
    try:
        language_model.batch_prompt("expert", ["z"] * 9, 0.7)
        out["too_many"] = "allowed"
    except Exception as exc:
        out["too_many"] = str(exc)
    out["codes"] = extract_code([F + "python\\nx = 1\\n" + F, None, "prose"])
    errors = []
    while True:
        try:
            utility("probe %d" % utility.uses)
        except Exception as exc:
            errors.append(str(exc))
            break
    try:
        language_model.prompt("expert", "over")
    except Exception as exc:
        errors.append(str(exc))
    out.update(scores=scores, replies=replies, empty=empty, errors=errors,
               end=[utility.uses, utility.remaining, language_model.times_used, language_model.remaining])
    return out
"""

U_BUDGET, LM_BUDGET = 6, 4


@pytest.mark.anyio
async def test_reference_interface_in_a_session() -> None:
    if not detect_layers().active("landlock"):
        pytest.fail("Landlock is unavailable here: the sandbox cannot run sessions")
    host = {"utility": 0, "lm": 0}
    bodies: list[dict[str, Any]] = []

    async def handler(kind: str, body: dict[str, Any], occurrence: int) -> Any:
        bodies.append({"kind": kind, **body})
        if kind == "utility":
            if host["utility"] >= U_BUDGET:
                raise BridgeError(f"Error: You have exceeded your call budget: utility.budget is {U_BUDGET} calls")
            host["utility"] += 1
            return len(body["solution"]) / 10
        msgs = [body["message"]] * body["n_responses"] if kind == "lm.prompt" else body["messages"]
        if len(msgs) > 6:
            raise BridgeError("Error: You have exceeded your call budget: 9 responses; at most 6")
        if host["lm"] >= LM_BUDGET:
            raise BridgeError(f"Error: You have exceeded your call budget: language_model.budget is {LM_BUDGET} calls")
        host["lm"] += 1
        return [f"r:{m}" for m in msgs]

    async with SandboxPool(SandboxConfig(workers=1)) as pool:
        r = await pool.run_session(
            Job(
                program=IMPROVER,
                function="improve_algorithm",
                wall_timeout_s=60,
                args=[
                    "seed",
                    UtilityProxy("prose", U_BUDGET, text="def utility(s): ..."),
                    LanguageModelProxy(LM_BUDGET, 6),
                ],
            ),
            on_request=handler,
        )
    assert r.status == "ok", (r.error, r.traceback)
    v = r.value
    assert v["start"] == [U_BUDGET, 0, U_BUDGET, LM_BUDGET, 0, LM_BUDGET]
    tricks = v["tricks"]
    for name in (
        "assign budget",
        "assign uses",
        "assign lm budget",
        "assign times_used",
        "assign remaining",
        "new attribute",
        "delete budget",
        "__dict__",
        "mangled slot",
    ):
        assert tricks[name] == "AttributeError", name
    # Tricks that only change the guest's own view (the class, its slots, a fresh proxy) or that
    # spend a call: whatever they did, the host allowed exactly U_BUDGET utility calls.
    assert v["zero"][:2] == [0.0, 0.0]
    assert v["test_mode"].startswith("utility(mode='test')")
    assert v["scores"] == [0.1, 0.2, 0.3]
    assert v["replies"] == ["r:m", "r:m", "r:k", "r:b1", "r:b2", "r:b3"]
    assert v["empty"] == []
    assert "at most 6" in v["too_many"]
    assert v["codes"] == ["x = 1", None, None]
    assert "utility.budget is 6" in v["errors"][0] and "language_model.budget is 4" in v["errors"][1]
    assert host == {"utility": U_BUDGET, "lm": LM_BUDGET}
    assert sum(1 for b in bodies if b["kind"] == "utility") == U_BUDGET + 1  # the refused one
    assert not any(
        b["kind"] == "utility" and not b["solution"] for b in bodies
    )  # utility(None/"") never left the guest
    assert not any(b.get("kind") == "lm.batch_prompt" and not b["messages"] for b in bodies)
