"""Crash-resume: a run killed with SIGKILL 20 times — at named crash points (an LM reply in
hand but not yet announced, sandbox results or an improver's outcome not yet written) and at
random moments — and resumed each time ends with exactly the events of an uninterrupted run."""

from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path

import pytest
from replay_helpers import REPO, STOP, read_run, run_stop, stop_env, write_config

from agents.crashpoints import POINTS
from lm import LMRequest, OfflineMutationModel
from lm.fake_server import FakeOpenAIServer
from replay.compare import compare_runs

KILLS = 20


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*STOP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
    )


def _has_run(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        read_run(db)
    except IndexError:
        return False
    return True


def _interrupted_run(db: Path, cfg: Path, rng: random.Random, env: dict[str, str]) -> list[str]:
    """Kill the run KILLS times, resuming after each; then let it finish. Returns what happened."""
    log: list[str] = []
    for i in range(KILLS):
        base = (
            ["resume", "latest", "--store", str(db), "--no-progress"]
            if _has_run(db)
            else ["self-improve", "--config", str(cfg), "--store", str(db), "--no-progress"]
        )
        env_i = dict(env)
        if i < 2 * len(POINTS):
            env_i["STOP_CRASH_POINT"] = POINTS[i % len(POINTS)]
            env_i["STOP_CRASH_AFTER"] = "1"
        proc = _start(base, env_i)
        try:
            if "STOP_CRASH_POINT" in env_i:
                proc.communicate(timeout=120)
            else:
                try:
                    proc.communicate(timeout=rng.uniform(0.3, 1.5))
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.communicate()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        log.append(f"{base[0]} -> {proc.returncode}")
        if proc.returncode == 0:  # it finished before the kill: start a fresh interrupted run
            break
    done = run_stop("resume", "latest", "--store", str(db), "--no-progress", env=env)
    assert done.returncode == 0, done.stderr
    return log


def _offline_reply(body: dict) -> list[str]:
    """The fake endpoint answers like the offline model would (deterministic per request)."""
    req = LMRequest(
        model=body["model"],
        messages=body["messages"],
        temperature=body.get("temperature", 0.7),
        max_tokens=body.get("max_tokens"),
        n=body.get("n", 1),
        seed=body.get("seed"),
    )
    model = OfflineMutationModel()
    return [model.reply(req, 0, i) for i in range(req.n)]


@pytest.mark.slow
def test_twenty_kills_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.json")
    with FakeOpenAIServer(replies=_offline_reply) as server:
        lm = {"generations": 2, "lm": {"backend": "openai", "base_url": server.base_url, "model": "fake-model"}}
        cfg = write_config(tmp_path / "config.json", lm)
        env = stop_env(OPENAI_API_KEY="test-key")

        ref_db = tmp_path / "reference.db"
        done = run_stop("self-improve", "--config", str(cfg), "--store", str(ref_db), "--no-progress", env=env)
        assert done.returncode == 0, done.stderr
        reference_calls = server.count("/v1/chat/completions")

        db = tmp_path / "interrupted.db"
        history = _interrupted_run(db, cfg, random.Random(1121), env)
        assert history.count("resume -> -9") + history.count("self-improve -> -9") == KILLS, history
        interrupted_calls = server.count("/v1/chat/completions") - reference_calls

    ref_id, reference = read_run(ref_db)
    run_id, events = read_run(db)
    assert run_id == ref_id  # identities derive from the log, so the runs line up
    comparison = compare_runs(reference, events)
    assert comparison.identical, (history, comparison.first and comparison.first.diff())
    # each LM request answered exactly once, each request event exactly once
    requests = [e for e in events if e.type == "lm.requested"]
    answers = [e for e in events if e.type in ("lm.responded", "lm.failed")]
    assert len({e.id for e in requests}) == len(requests)
    assert sorted(a.causation_id for a in answers) == sorted(r.id for r in requests)
    assert len([e for e in events if e.type == "run.finished"]) == 1
    # the endpoint saw each call once, except those a kill cut off while they were in flight
    # (an answer the process never recorded must be asked again): at most one per kill
    assert reference_calls == len(requests)
    assert len(requests) <= interrupted_calls <= len(requests) + KILLS, history
