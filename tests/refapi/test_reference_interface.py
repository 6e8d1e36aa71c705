"""Improvers written for the STOP reference run here unchanged: ``from helpers import
extract_code``, fixed budgets with ``uses`` / ``times_used`` counters, ``utility(None)``, the
``mode`` and ``message_batch`` call forms; budgets stay the host's."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sandbox"))
from sandbox_helpers import skip_unless

from sandbox import BridgeError, Job, LanguageModelProxy, SandboxConfig, SandboxPool, UtilityProxy
from sandbox._scan import scan_program
from sandbox.stop_guest.helpers import extract_code

NESTED = "Here:\n```python\ndef f():\n    doc = '''\n```text\ninner\n```\n'''\n    return doc\n```\nDone."


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("```python\nx = 1\n```", "x = 1"),
        ("no code at all", None),
        ("", None),
        ("a\n```python\nshort\n```\nb\n```python\nthe longer one\n```\n", "the longer one"),
        ("```\nbare fences\n```", "bare fences"),
        (NESTED, "def f():\n    doc = '''\n```text\ninner\n```\n'''\n    return doc"),
    ],
)
def test_extract_code_cases(reply: str, expected: str | None) -> None:
    assert extract_code(reply) == expected


def test_extract_code_maps_lists_and_keeps_none() -> None:
    assert extract_code(["```python\na\n```", None, "prose"]) == ["a", None, None]
    assert extract_code([]) == []
    with pytest.raises(TypeError):
        extract_code(3)  # type: ignore[call-overload]  # a wrong type on purpose


def test_the_helpers_import_is_not_flagged_but_the_guest_package_is() -> None:
    assert scan_program("from helpers import extract_code\n") == []
    assert any(f.category == "sandbox_tampering" for f in scan_program("from stop_guest.helpers import extract_code\n"))


REFERENCE_STYLE = '''
from helpers import extract_code

def improve_algorithm(initial_solution, utility, language_model):
    """An improver in the reference's style: it keeps its own counters against the totals."""
    seen = {"u_budget": utility.budget, "lm_budget": language_model.budget}
    seen["none"] = utility(None)
    seen["empty"] = utility("")
    try:
        utility(initial_solution, mode="test")
        seen["test_mode"] = "allowed"
    except ValueError as exc:
        seen["test_mode"] = "refused"
    for name, target in (("budget", utility), ("uses", utility), ("budget", language_model),
                         ("times_used", language_model)):
        try:
            setattr(target, name, 10**6)
            seen[f"write_{name}"] = "CHANGED"
        except AttributeError:
            seen[f"write_{name}"] = "read-only"
    best, best_u = initial_solution, utility(initial_solution, mode="val")
    while language_model.times_used < language_model.budget:
        replies = language_model.batch_prompt("expert", message_batch=["improve:\\n" + best] * 2)
        for code in extract_code(replies):
            if code is None or utility.uses >= utility.budget:
                continue
            u = utility(code)
            if u > best_u:
                best, best_u = code, u
    seen["empty_batch"] = language_model.batch_prompt("expert", [])
    try:
        language_model.prompt("expert", "one more")
        seen["over_lm"] = "allowed"
    except Exception as exc:
        seen["over_lm"] = str(exc)
    seen.update(uses=utility.uses, times_used=language_model.times_used, best=best,
                remaining=(utility.remaining, language_model.remaining))
    return seen
'''


@pytest.mark.anyio
async def test_a_reference_style_improver_spends_exactly_its_budgets() -> None:
    skip_unless("any")
    host = {"utility": 0, "lm": 0}
    u_budget, lm_budget = 5, 2

    async def handler(kind: str, body: dict[str, Any], occurrence: int) -> Any:
        if kind == "utility":
            if host["utility"] >= u_budget:
                raise BridgeError(f"budget exceeded: utility was already called {u_budget} times (its budget)")
            host["utility"] += 1
            return float(len(body["solution"])) / 100
        if host["lm"] >= lm_budget:
            raise BridgeError(f"budget exceeded: the language model was already called {lm_budget} times (its budget)")
        host["lm"] += 1
        n = host["lm"]
        return [f"```python\n{'x' * (10 * n + k)}\n```" for k in range(len(body.get("messages", [1])))]

    async with SandboxPool(SandboxConfig(workers=1)) as pool:
        r = await pool.run_session(
            Job(
                program=REFERENCE_STYLE,
                function="improve_algorithm",
                wall_timeout_s=60,
                seed=1,
                args=[
                    "seed",
                    UtilityProxy(description="score it", budget=u_budget),
                    LanguageModelProxy(budget=lm_budget, max_responses_per_call=6),
                ],
            ),
            on_request=handler,
        )
    assert r.status == "ok", (r.error, r.traceback)
    v = r.value
    assert (v["u_budget"], v["lm_budget"]) == (u_budget, lm_budget)  # totals, not a countdown
    assert (v["none"], v["empty"], v["test_mode"]) == (0.0, 0.0, "refused")
    assert {k: v[k] for k in v if k.startswith("write_")} == dict.fromkeys(
        ("write_budget", "write_uses", "write_times_used"), "read-only"
    )
    assert v["empty_batch"] == []
    assert "budget exceeded" in v["over_lm"] and str(lm_budget) in v["over_lm"]
    assert host == {"utility": u_budget, "lm": lm_budget}  # exactly its budgets, at the host
    assert (v["uses"], v["times_used"], v["remaining"]) == (u_budget, lm_budget, (0, 0))
    assert v["best"] == "x" * 21
