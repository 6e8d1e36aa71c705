"""The offline mutation model: deterministic across processes, always valid, signature-keeping."""

from __future__ import annotations

import ast
import json
import os
import random
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lmtest_helpers import program

from lm import OFFLINE_LABEL, LMRequest, OfflineMutationModel, count_tokens, extract_blocks
from lm._mutate import signatures
from lm._offline import NO_CODE_REPLY

PROGRAMS = ["lpn_seed", "walksat_seed", "annealing_seed", "seed_improver"]


def improve_prompt(code: str, extra: str = "") -> LMRequest:
    """The STOP seed improver's prompt shape: solution block, then the utility block."""
    msg = (
        f"Improve the following solution:\n```python\n{code}\n```\n\nYou will be evaluated based on "
        f"this score function:\n```python\ndef utility(algorithm_str: str):\n    return 0.5\n```\n{extra}"
    )
    return LMRequest(
        model="offline-mutation-v1",
        messages=[{"role": "system", "content": "expert"}, {"role": "user", "content": msg}],
        n=1,
    )


def code_of(reply: str) -> str:
    blocks = extract_blocks(reply)
    assert len(blocks) == 1, reply
    return blocks[0]


def test_describe_is_honest() -> None:
    d = OfflineMutationModel().describe()
    assert d["kind"] == "offline" and d["label"] == OFFLINE_LABEL == "offline, no language model"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(PROGRAMS),
    ordinal=st.integers(0, 10_000),
    index=st.integers(0, 5),
    temperature=st.sampled_from([0.0, 0.4, 0.7, 1.0]),
)
def test_reply_is_valid_python_with_the_same_signatures(
    name: str, ordinal: int, index: int, temperature: float
) -> None:
    src = program(name)
    req = LMRequest(model="m", messages=improve_prompt(src).message_dicts, temperature=temperature)
    reply = OfflineMutationModel().reply(req, ordinal, index)
    first, rest = reply.split("\n", 1)
    assert first.startswith("Idea: ") and "```" not in first
    assert rest.lstrip().startswith("```python")
    code = code_of(reply)
    compile(code, "<mutant>", "exec")
    assert signatures(ast.parse(code)) == signatures(ast.parse(src))


@settings(max_examples=30, deadline=None)
@given(ordinal=st.integers(0, 1000), index=st.integers(0, 3))
def test_crossover_prompt_stays_valid(ordinal: int, index: int) -> None:
    a, b = (
        program("walksat_seed"),
        program("walksat_seed").replace("max_iter = 1000", "max_iter = 50").replace("p = 0.4", "p = 0.6"),
    )
    req = improve_prompt(a, extra=f"\nAn earlier attempt:\n```python\n{b}\n```\n")
    code = code_of(OfflineMutationModel().reply(req, ordinal, index))
    compile(code, "<mutant>", "exec")
    assert signatures(ast.parse(code)) == signatures(ast.parse(a))


def test_crossover_happens() -> None:
    a = "def f(x):\n    return x + 1\n"
    b = "import math\n\ndef f(x):\n    return math.floor(x * 3)\n"
    req = improve_prompt(a, extra=f"\nAnother program:\n```python\n{b}\n```\n")
    m = OfflineMutationModel()
    ideas = [m.reply(req, 0, i) for i in range(30)]
    assert any("from another program" in r and "import math" in r for r in ideas)


def test_no_code_reply() -> None:
    req = LMRequest(model="m", messages=[{"role": "user", "content": "What is a heap?"}])
    assert OfflineMutationModel().reply(req) == NO_CODE_REPLY
    assert extract_blocks(NO_CODE_REPLY) == []


@pytest.mark.anyio
async def test_samples_differ_and_usage_is_deterministic() -> None:
    m = OfflineMutationModel()
    req = improve_prompt(program("walksat_seed")).with_n(6)
    out = await m.complete(req)
    again = await m.complete(req)
    assert out == again
    assert len({c.text for c in out}) >= 4
    assert out[0].prompt_tokens == sum(3 + count_tokens(x["content"]) for x in req.message_dicts)
    assert all(c.completion_tokens == count_tokens(c.text) for c in out)
    other = await m.complete(req, ordinal=1)
    assert [c.text for c in other] != [c.text for c in out]


_CHILD = r"""
import json, sys
from lm import LMRequest, OfflineMutationModel
spec = json.loads(sys.stdin.read())
m = OfflineMutationModel()
print(json.dumps([m.reply(LMRequest.from_canonical(c), k, i) for c, k, i in spec]))
"""


def test_deterministic_across_processes() -> None:
    """A fresh interpreter with a different hash seed produces the same replies."""
    spec = [(improve_prompt(program(n)).with_n(2).canonical(), k, i) for n in PROGRAMS for k in (0, 7) for i in (0, 1)]
    m = OfflineMutationModel()
    here = [m.reply(LMRequest.from_canonical(c), k, i) for c, k, i in spec]
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout) == here


def _planted_3sat(rng: random.Random, n: int) -> list[list[int]]:
    truth = [rng.random() < 0.5 for _ in range(n + 1)]
    formula = []
    while len(formula) < 4 * n:
        vs = rng.sample(range(1, n + 1), 3)
        clause = [v if rng.random() < 0.5 else -v for v in vs]
        if any(truth[abs(lit)] == (lit > 0) for lit in clause):
            formula.append(clause)
    return formula


def _sat_utility(code: str, formulas: list[list[list[int]]]) -> float:
    """Fraction of planted formulas solved (a host-side stand-in for the 3-SAT utility)."""
    ns: dict[str, object] = {}
    exec(compile(code, "<candidate>", "exec"), ns)  # test-only: our own seed and its mutants
    algorithm = ns["algorithm"]
    random.seed(0)
    solved = 0
    for f in formulas:
        try:
            a = algorithm(f)  # type: ignore[operator]
        except Exception:
            continue
        if a is not None and all(any(a[abs(lit) - 1] == (lit > 0) for lit in c) for c in f):
            solved += 1
    return solved / len(formulas)


def test_improves_the_walksat_seed_a_little() -> None:
    """With a starved iteration budget, some of a dozen proposals score higher than the seed."""
    seed = program("walksat_seed").replace("max_iter = 1000", "max_iter = 8")
    rng = random.Random(1)
    formulas = [_planted_3sat(rng, 20) for _ in range(12)]
    base = _sat_utility(seed, formulas)
    req = improve_prompt(seed).with_n(12)
    m = OfflineMutationModel()
    scores = [_sat_utility(code_of(m.reply(req, 0, i)), formulas) for i in range(12)]
    assert max(scores) > base


def test_changes_improver_parameters() -> None:
    """Given the seed improver, proposals change its temperature and its samples per call."""
    src = program("seed_improver")
    m = OfflineMutationModel()
    req = improve_prompt(src)
    codes = [code_of(m.reply(req, k, 0)) for k in range(40)]
    temps = {re.search(r"temperature=([0-9.]+)", c).group(1) for c in codes if re.search(r"temperature=([0-9.]+)", c)}  # type: ignore[union-attr]
    assert len(temps - {"0.7"}) >= 1
    assert any("n_messages = max(1" in c or "n_messages = min(" not in c for c in codes)


def test_fence_extraction_handles_programs_that_contain_fences() -> None:
    src = program("seed_improver")
    text = f"Improve:\n```python\n{src}\n```\nscore:\n```python\ndef utility(s):\n    return 1\n```\n"
    blocks = extract_blocks(text)
    assert len(blocks) == 2
    assert "def improve_algorithm" in blocks[0] and "def utility" in blocks[1]
