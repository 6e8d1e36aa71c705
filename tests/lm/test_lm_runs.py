"""``stop improve`` as a user runs it (a subprocess) against the fake endpoint on 127.0.0.1:
each endpoint fault gives the documented status, exit code, message and recorded event, and
never a traceback; a spend cap stops the run with nothing lost and a resume goes past it."""

from __future__ import annotations

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

from events import Event, verify_chain
from lm.fake_server import FakeOpenAIServer, Fault
from store import SqliteStore

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-test-good"
BUDGET = {"responses_per_call": 2, "lm_calls": 2, "utility_calls": 2}


@pytest.fixture
def srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY, models=["fake-model"]) as s:
        yield s


def _config(tmp: Path, srv: FakeOpenAIServer, **extra: Any) -> Path:
    lm = {"backend": "openai", "base_url": srv.base_url, "model": "fake-model", "max_attempts": 2}
    lm.update(extra.pop("lm", {}))
    data = {"lm": lm, "meta_utility": {"improver": BUDGET}, **extra}
    path = tmp / "config.json"
    path.write_text(json.dumps(data))
    return path


def _stop(args: list[str], key: str = KEY) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_API_KEY"] = key
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--json", "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    # the improver's own traceback is shown indented under its failure; a host bug's is not
    assert not re.search(r"^Traceback", proc.stderr, re.M), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}, proc.stderr


def _improve(tmp: Path, config: Path, key: str = KEY, *flags: str) -> tuple[int, dict[str, Any], str]:
    db = tmp / "stop.db"
    return _stop(["improve", "--task", "parity_noise", "--store", str(db), "--config", str(config), *flags], key)


def _events(tmp: Path, run_id: str) -> list[Event]:
    async def read() -> list[Event]:
        store = await SqliteStore.open(str(tmp / "stop.db"), create=False)
        try:
            return await store.read(run_id)
        finally:
            await store.aclose()

    return anyio.run(read)


FATAL = [
    pytest.param("wrong-key", None, "auth", 401, "OPENAI_API_KEY", id="401"),
    pytest.param(KEY, "nosuch", "model", 404, "lm.model", id="404"),
    pytest.param(KEY, Fault.bad_request(), "request", 400, "refused the request", id="400"),
]


@pytest.mark.parametrize(("key", "fault", "kind", "status", "fix"), FATAL)
def test_fatal_endpoint_error_fails_the_run(
    srv: FakeOpenAIServer, tmp_path: Path, key: str, fault: Fault | str | None, kind: str, status: int, fix: str
) -> None:
    lm = {"model": fault} if isinstance(fault, str) else {}
    if isinstance(fault, Fault):
        srv.inject(fault)
    code, out, err = _improve(tmp_path, _config(tmp_path, srv, lm=lm), key)
    assert code == 1 and out["status"] == "failed"
    assert any(fix in e["message"] for e in out["errors"]), out
    assert fix in err and f"HTTP {status}" in err
    events = _events(tmp_path, out["run_id"])
    failed = [e for e in events if e.type == "lm.failed"]
    assert failed[0].payload["kind"] == kind and failed[0].payload["status"] == status and failed[0].payload["fatal"]
    assert events[-1].type == "run.failed" or any(e.type == "run.failed" for e in events)
    # the run stopped asking the model at the first fatal error
    assert srv.count("/v1/chat/completions") == 1


@pytest.mark.parametrize(
    "fault",
    [Fault.html(), Fault.empty_choices(), Fault.wrong_types(), Fault.null_content(), Fault.truncate()],
    ids=["html", "empty-choices", "wrong-types", "null-content", "closed-mid-body"],
)
def test_malformed_reply_fails_that_request_not_the_run(srv: FakeOpenAIServer, tmp_path: Path, fault: Fault) -> None:
    """Retried (max_attempts 2), then a recorded lm.failed: the improver session sees an error,
    the improvement fails (exit 1, status failed) and the run ends normally: no crash."""
    srv.inject(*[fault] * 40)
    code, out, err = _improve(tmp_path, _config(tmp_path, srv))
    assert code == 1 and out["status"] == "failed", out
    events = _events(tmp_path, out["run_id"])
    failed = [e for e in events if e.type == "lm.failed"]
    assert failed and all(e.payload["kind"] in ("malformed", "connection") for e in failed)
    assert not any(e.payload["fatal"] for e in failed)
    assert any(e.type == "run.finished" for e in events)
    assert "lm.retry" in err


@pytest.mark.parametrize("fault", [Fault.rate_limit(0.2), Fault.server_error(500)], ids=["429-then-ok", "500-then-ok"])
def test_transient_then_ok_finishes(srv: FakeOpenAIServer, tmp_path: Path, fault: Fault) -> None:
    srv.inject(fault)
    code, out, _ = _improve(tmp_path, _config(tmp_path, srv))
    events = _events(tmp_path, out["run_id"])
    assert not [e for e in events if e.type == "lm.failed"]
    assert [e for e in events if e.type == "lm.responded"]
    assert out["status"] in ("finished", "failed") and code == (0 if out["status"] == "finished" else 1)
    assert not [e for e in out["errors"] if e.get("where") == "lm"]


def test_hung_endpoint_times_out_per_request(srv: FakeOpenAIServer, tmp_path: Path) -> None:
    srv.inject(*[Fault.hang(30)] * 20)
    code, out, err = _improve(tmp_path, _config(tmp_path, srv, lm={"timeout_s": 1.0}))
    events = _events(tmp_path, out["run_id"])
    failed = [e for e in events if e.type == "lm.failed"]
    assert failed and failed[0].payload["kind"] == "timeout" and "lm.timeout_s=1" in failed[0].payload["error"]
    assert "lm.stalled" in err and code == 1


def test_one_choice_for_n_is_fanned_out_and_recorded(tmp_path: Path) -> None:
    with FakeOpenAIServer(api_key=KEY, ignore_n=True) as srv:
        _, out, _ = _improve(tmp_path, _config(tmp_path, srv))
    events = _events(tmp_path, out["run_id"])
    answers = [e for e in events if e.type == "lm.responded"]
    assert answers and all(
        len(a.payload["completions"]) == next(e for e in events if e.id == a.causation_id).payload["request"]["n"]
        for a in answers
    )
    observed = [e for e in events if e.type == "lm.endpoint"]
    assert observed and observed[-1].payload["accepts"]["fake-model"]["n_honoured"] is False


def test_cost_cap_stops_the_run_and_resume_goes_past_it(srv: FakeOpenAIServer, tmp_path: Path) -> None:
    """A cap below the worst case of the improver's request (its prompt plus max_tokens 1024 x
    n=2 at $1 per 1k tokens, over $2): nothing is sent, the run stops at budget_exhausted (exit
    1) with its log intact and the request kept unanswered; a resume with a raised cap finishes.
    (In-flight accounting with several requests: test_lm_spend.)"""
    prices = {"fake-model": [1.0, 1.0]}
    config = _config(tmp_path, srv, lm={"prices": prices}, max_cost_usd=2.5)
    code, out, err = _improve(tmp_path, config)
    assert code == 1 and out["status"] == "budget_exhausted", out
    assert "max_cost_usd=2.5" in err and "stop resume" in err
    run_id = out["run_id"]
    events = _events(tmp_path, run_id)
    (exhausted,) = [e for e in events if e.type == "budget.exhausted"]
    assert exhausted.payload["cap"] == "max_cost_usd" and exhausted.payload["spent"]["cost_usd"] <= 2.5
    requested = [e for e in events if e.type == "lm.requested"]
    answered = {e.causation_id for e in events if e.type in ("lm.responded", "lm.failed")}
    assert requested and not answered  # the refused request is kept, unanswered
    assert verify_chain(events).ok
    assert srv.count("/v1/chat/completions") == 0

    code, _, err = _stop(["resume", run_id, "--store", str(tmp_path / "stop.db")])
    assert code == 2 and "spend cap" in err  # resuming without a raise would stop at once

    code, resumed, _ = _stop(["resume", run_id, "--store", str(tmp_path / "stop.db"), "--max-cost-usd", "100"])
    assert resumed["status"] in ("finished", "failed") and resumed["status"] != "budget_exhausted"
    events = _events(tmp_path, run_id)
    assert [e.payload["caps"]["max_cost_usd"] for e in events if e.type == "budget.raised"] == [100.0]
    assert any(e.type == "run.finished" for e in events)
    assert verify_chain(events).ok
    requested = [e for e in events if e.type == "lm.requested"]
    answered = {e.causation_id for e in events if e.type == "lm.responded"}
    assert {e.id for e in requested} <= answered


def test_length_limited_empty_reply_is_recorded_and_audited(srv: FakeOpenAIServer, tmp_path: Path) -> None:
    """An empty reply that hit the token limit (a reasoning model) is its own outcome in the
    log and in ``stop audit``; the endpoint's observed parameters are recorded once."""
    srv.inject(Fault.length_empty())
    _, out, _ = _improve(tmp_path, _config(tmp_path, srv))
    run_id = out["run_id"]
    events = _events(tmp_path, run_id)
    reasons = [c["finish_reason"] for e in events if e.type == "lm.responded" for c in e.payload["completions"]]
    assert "length" in reasons
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "audit", run_id, "--store", str(tmp_path / "stop.db"), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    audit = json.loads(proc.stdout)
    assert audit["lm_outcomes"]["length"] == reasons.count("length")
    assert len([e for e in events if e.type == "lm.endpoint"]) == 1


def test_run_with_lm_failures_replays_identically(srv: FakeOpenAIServer, tmp_path: Path) -> None:
    """Failed requests (retries exhausted) and the endpoint facts recorded live replay offline
    as recorded: the replay fails those requests the same way. (A run that failed on a fatal
    error is cut short while work is in flight, so its replay may get further.)"""
    srv.inject(*[Fault.empty_choices()] * 40)
    code, out, _ = _improve(tmp_path, _config(tmp_path, srv))
    assert code == 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "replay", out["run_id"], "--store", str(tmp_path / "stop.db"), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
