"""``stop repair`` end to end against the fake OpenAI endpoint, then ``stop passat`` on its trees.

The scripted model answers sampling prompts with two wrong programs (sample 0 returns None,
sample 1 raises) and repair prompts with the canonical solution for the first and another wrong
program for the second, so every problem is solved by exactly one repair: a tree small enough
to compute the bootstrap's expectations exactly by enumeration.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from cli.main import main as stop_main
from lm.fake_server import FakeOpenAIServer
from replay.passat import Tree, estimate, load_trees
from store import SqliteStore
from tasks.humaneval import get_problem

PROBLEMS = [f"HumanEval/{i}" for i in range(5)]
MODEL = "fake-model"
ROOT = Path(__file__).resolve().parents[2]


def _problem_in(content: str) -> Any:
    for task_id in PROBLEMS:
        p = get_problem(task_id)
        if p.prompt.strip() in content:
            return p
    raise AssertionError(f"no known problem in prompt: {content[:200]}")


def _scripted(body: dict[str, Any]) -> list[str]:
    content = str(body["messages"][-1]["content"])
    n = int(body.get("n") or 1)
    p = _problem_in(content)
    canonical = f"```python\n{p.prompt}{p.canonical_solution}```\n"
    if content.startswith("Complete the following"):
        if "solo" in str(body.get("model")):
            return ["I would rather not write this one."] * n  # no code at all
        full_wrong = f"```python\n{p.prompt}    return None\n```\n"
        body_wrong = "```python\nraise ValueError('not implemented yet')\n```\n"
        return [full_wrong, body_wrong][:n]
    error = re.search(r"The program fails the tests with: (.*)", content)
    assert error, content
    if "Do not write any code" in content:  # separate feedback
        return [f"Explanation {j}: the check reports {error.group(1)}" for j in range(n)]
    if "### Explanation of the failure" in content:  # separate fix
        return [f"Fixed.\n\n{canonical}"] * n
    failing = content.split("### Error")[0]
    why = f"The program fails because {error.group(1)}."
    if "return None" in failing:
        return [f"{why} It returns None instead of computing the result.\n\n{canonical}"] * n
    return [f"{why} Let me try again.\n\n```python\n{p.prompt}    raise ValueError('still wrong')\n```\n"] * n


def _run_subprocess(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Runs against the endpoint go out of process: the session never closes its HTTP client,
    and the unclosed-socket warning it leaves behind would fail an unrelated test here."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    return proc.returncode, proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr[-3000:]


def _run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = stop_main(argv)
    return code, out.getvalue()


async def _events(db: Path, run_id: str) -> list[Any]:
    store = await SqliteStore.open(str(db), create=False)
    try:
        return await store.read(run_id)
    finally:
        await store.aclose()


async def _trees(db: Path, run_id: str) -> list[Tree]:
    store = await SqliteStore.open(str(db), create=False)
    try:
        return await load_trees(store, run_id)
    finally:
        await store.aclose()


async def _blob(db: Path, digest: str) -> str:
    store = await SqliteStore.open(str(db), create=False)
    try:
        return (await store.get_blob(digest)).decode("utf-8")
    finally:
        await store.aclose()


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any], FakeOpenAIServer]]:
    db = tmp_path_factory.mktemp("repair") / "stop.db"
    with FakeOpenAIServer(replies=_scripted) as srv:
        env = {"OPENAI_BASE_URL": srv.base_url, "OPENAI_API_KEY": "sk-test"}
        code, out = _run_subprocess(
            [
                "repair",
                "--dataset",
                "humaneval",
                "--problems",
                *PROBLEMS,
                "--n-p",
                "2",
                "--n-fr",
                "1",
                "--model",
                MODEL,
                "--store",
                str(db),
                "--json",
                "--no-progress",
            ],
            env,
        )
        assert code == 0, out
        yield db, json.loads(out), srv


def test_problems_are_solved_by_repair(fake_run: tuple[Path, dict[str, Any], FakeOpenAIServer]) -> None:
    _, result, _ = fake_run
    s = result["summary"]
    assert result["status"] == "finished" and s["mode"] == "joint" and (s["n_p"], s["n_fr"]) == (2, 1)
    assert [r["problem"] for r in s["problems"]] == PROBLEMS
    for row in s["problems"]:
        assert row["solved"] and row["solved_by"] == "repair"
        assert (row["samples"], row["repairs"], row["programs"]) == (2, 2, 4)
    assert s["solved"] == 5 and s["pass_rate"] == 1.0


def test_repairs_link_to_the_failure_they_answer(fake_run: tuple[Path, dict[str, Any], FakeOpenAIServer]) -> None:
    db, result, _ = fake_run
    events = anyio.run(_events, db, result["run_id"])
    by_id = {e.id: e for e in events}
    checks = {by_id[e.causation_id].causation_id: e for e in events if e.type == "utility.evaluated"}
    programs = [e for e in events if e.type == "repair.program"]
    assert len(programs) == 20 and len(checks) == 20
    for prog in programs:
        check = checks[prog.id]
        if prog.payload["kind"] == "sample":
            assert prog.payload["parent"] is None and not check.payload["detail"]["passed"]
            continue
        parent = by_id[prog.payload["parent"]]
        assert prog.causation_id == parent.id and parent.payload["kind"] == "sample"
        failure = checks[parent.id].payload["detail"]["feedback"]
        feedback = anyio.run(_blob, db, prog.payload["feedback"])
        assert failure in feedback and "`assert " in feedback  # names the failing assertion
        assert "```" not in feedback  # the explanation alone, code stripped
        assert check.payload["detail"]["passed"] == (parent.key == "sample/0")
    # the body-only reply was completed into the prompt's function, so it failed on a test
    body_only = [p for p in programs if p.key == "sample/1"]
    for prog in body_only:
        text = anyio.run(_blob, db, prog.payload["program"])
        assert text.startswith(get_problem(prog.payload["problem"]).prompt)
        assert "ValueError: not implemented yet" in checks[prog.id].payload["detail"]["feedback"]


def test_no_duplicate_lm_calls(fake_run: tuple[Path, dict[str, Any], FakeOpenAIServer]) -> None:
    db, result, srv = fake_run
    events = anyio.run(_events, db, result["run_id"])
    requested = [e for e in events if e.type == "lm.requested"]
    assert len(requested) == 5 + 10  # one sampling call per problem, one joint call per failing sample
    assert sorted(e.payload["purpose"] for e in requested) == ["repair.joint"] * 10 + ["repair.sample"] * 5
    bodies = [json.dumps(b, sort_keys=True) for b in srv.bodies]
    assert srv.count("/v1/chat/completions") == len(requested) == len(set(bodies))
    assert {b["model"] for b in srv.bodies} == {MODEL}
    assert all(b["temperature"] == 0.8 for b in srv.bodies)


def _exact(tree: Tree, n_p: int, n_fr: int) -> tuple[float, float]:
    """Exact expectation (pass, tokens) of one problem under the estimator's draw, by enumeration."""
    ns = len(tree.samples)
    total_p = total_t = 0.0
    weight = 1.0 / ns**n_p
    for idx in itertools.product(range(ns), repeat=n_p):
        drawn = [tree.samples[i] for i in idx]
        tokens = sum(s.tokens for s in drawn)
        if any(s.passed for s in drawn) or n_fr == 0:
            total_p += weight * any(s.passed for s in drawn)
            total_t += weight * tokens
            continue
        pools = [tree.repairs[i] for i in idx]
        choices = list(itertools.product(*[list(itertools.product(pool, repeat=n_fr)) for pool in pools]))
        for choice in choices:
            w = weight / len(choices)
            reps = [r for group in choice for r in group]
            total_p += w * any(r.passed for r in reps)
            total_t += w * (tokens + sum(r.tokens for r in reps))
    return total_p, total_t


def test_passat_matches_exact_expectations(fake_run: tuple[Path, dict[str, Any], FakeOpenAIServer]) -> None:
    db, result, _ = fake_run
    trees = anyio.run(_trees, db, result["run_id"])
    assert [t.problem for t in trees] == PROBLEMS
    for t in trees:
        assert [s.passed for s in t.samples] == [False, False]
        assert [[r.passed for r in reps] for reps in t.repairs] == [[True], [False]]
        assert all(s.tokens > 0 for s in t.samples)
    hand = {(1, 0): 0.0, (2, 0): 0.0, (1, 1): 0.5, (2, 1): 0.75}  # 1 - P(no draw of sample 0)
    for (n_p, n_fr), expected in hand.items():
        exact = [_exact(t, n_p, n_fr) for t in trees]
        assert sum(p for p, _ in exact) / len(trees) == pytest.approx(expected)
        est = estimate(trees, n_p, n_fr, resamples=1000, seed=2023)
        assert est.programs == n_p * (1 + n_fr)  # every drawn sample fails, so each gets its repairs
        assert est.pass_rate == pytest.approx(expected, abs=0.03)
        tokens = sum(t for _, t in exact) / len(trees)
        assert est.tokens == pytest.approx(tokens, rel=0.03)
        if n_fr == 0:
            assert est.pass_std == 0.0

    code, out = _run_cli(["passat", result["run_id"], "--store", str(db), "--json"])
    assert code == 0
    table = json.loads(out)
    assert (table["n_p"], table["n_fr"], table["problems"], table["resamples"]) == (2, 1, 5, 1000)
    rows = {(r["n_p"], r["n_fr"]): r for r in table["rows"]}
    assert set(rows) == set(hand)
    for key, row in rows.items():
        assert row["pass_rate"] == estimate(trees, *key).pass_rate  # same seed, same draws
        assert row["k"] == key[0] * (1 + key[1]) and row["iid_pass_rate"] == 0.0
    assert [b["k"] for b in table["baseline"]] == [1, 2, 3, 4]
    # deterministic: the same call twice gives the same numbers; another seed other draws
    assert _run_cli(["passat", result["run_id"], "--store", str(db), "--json"])[1] == out
    other = json.loads(_run_cli(["passat", result["run_id"], "--store", str(db), "--json", "--seed", "7"])[1])
    assert other["rows"] != table["rows"]


def test_passat_plot(fake_run: tuple[Path, dict[str, Any], FakeOpenAIServer], tmp_path: Path) -> None:
    db, _result, _ = fake_run
    png = tmp_path / "passat.png"
    code, out = _run_cli(["passat", "latest", "--store", str(db), "--plot", str(png), "--resamples", "200"])
    assert code == 0 and "iid@k" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_separate_feedback_model_and_no_code_reply(tmp_path: Path) -> None:
    db = tmp_path / "stop.db"
    with FakeOpenAIServer(replies=_scripted) as srv:
        env = {"OPENAI_BASE_URL": srv.base_url, "OPENAI_API_KEY": "sk-test"}
        code, out = _run_subprocess(
            [
                "repair",
                "--problems",
                "2",
                "--n-p",
                "1",
                "--n-fr",
                "2",
                "--model",
                "solo-model",
                "--feedback-model",
                "critic",
                "--store",
                str(db),
                "--json",
                "--no-progress",
            ],
            env,
        )
        assert code == 0, out
        bodies = srv.bodies
    s = json.loads(out)["summary"]
    assert s["mode"] == "separate" and s["feedback_model"] == "critic"
    (row,) = s["problems"]
    assert row["solved_by"] == "repair" and (row["samples"], row["repairs"]) == (1, 2)
    # one sampling call, one feedback call (n=2) on the critic, one fix per explanation on the main model
    models = sorted((b["model"], b["n"]) for b in bodies)
    assert models == [("critic", 2), ("solo-model", 1), ("solo-model", 1), ("solo-model", 1)]
    events = anyio.run(_events, db, json.loads(out)["run_id"])
    by_id = {e.id: e for e in events}
    checks = {by_id[e.causation_id].causation_id: e.payload["detail"] for e in events if e.type == "utility.evaluated"}
    (sample,) = [e for e in events if e.type == "repair.program" and e.payload["kind"] == "sample"]
    assert "no code in reply" in checks[sample.id]["feedback"] and not checks[sample.id]["passed"]
    repairs = [e for e in events if e.type == "repair.program" and e.payload["kind"] == "repair"]
    for j, rep in enumerate(sorted(repairs, key=lambda e: e.key)):
        assert rep.payload["parent"] == sample.id and checks[rep.id]["passed"]
        explanation = anyio.run(_blob, db, rep.payload["feedback"])
        assert explanation.startswith(f"Explanation {j}:") and "no code in reply" in explanation
    purposes = sorted(e.payload["purpose"] for e in events if e.type == "lm.requested")
    assert purposes == ["repair.feedback", "repair.fix", "repair.fix", "repair.sample"]


def test_offline_run_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(var, raising=False)
    db = tmp_path / "stop.db"
    code, out = _run_cli(
        [
            "repair",
            "--problems",
            "0",
            "HumanEval/1",
            "--n-p",
            "2",
            "--n-fr",
            "1",
            "--store",
            str(db),
            "--json",
            "--no-progress",
        ]
    )
    assert code == 0, out
    result = json.loads(out)
    assert result["status"] == "finished"
    assert [r["problem"] for r in result["summary"]["problems"]] == ["HumanEval/0", "HumanEval/1"]
    code, out = _run_cli(["passat", result["run_id"], "--store", str(db), "--resamples", "50"])
    assert code == 0 and "n_fr" in out


async def _rerun_workflow(db: Path, run_id: str) -> tuple[int, int]:
    """Call the workflow again on the finished run: every decision must come out the same."""
    from agents.context import AgentContext
    from agents.repair import progress_repair
    from agents.runinfo import run_info

    store = await SqliteStore.open(str(db), create=True)
    try:
        before = len(await store.read(run_id))
        await progress_repair(AgentContext(store, run_id, "test"), await run_info(store, run_id))
        return before, len(await store.read(run_id))
    finally:
        await store.aclose()


def test_workflow_is_reentrant(fake_run: tuple[Path, dict[str, Any], FakeOpenAIServer]) -> None:
    db, result, _ = fake_run
    before, after = anyio.run(_rerun_workflow, db, result["run_id"])
    assert before == after  # re-ensuring the same facts appends nothing (and raises no conflict)


async def _namespaces(db: Path, run_id: str) -> list[tuple[str, str]]:
    from agents.identity import lm_namespace

    store = await SqliteStore.open(str(db), create=False)
    try:
        out = []
        for ev in await store.read(run_id, types={"lm.requested"}):
            cause = await store.get(ev.causation_id or "")
            assert cause is not None
            out.append((ev.payload["namespace"], await lm_namespace(store, cause, 0)))
        return out
    finally:
        await store.aclose()


def test_lm_namespaces_follow_the_causal_path(fake_run: tuple[Path, dict[str, Any], FakeOpenAIServer]) -> None:
    db, result, _ = fake_run
    pairs = anyio.run(_namespaces, db, result["run_id"])
    assert len(pairs) == 15 and all(a == b for a, b in pairs)
    assert len({a for a, _ in pairs}) == 15  # every request its own sample space
