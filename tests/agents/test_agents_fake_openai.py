"""End to end against a fake OpenAI endpoint on 127.0.0.1 with scripted replies.

The run uses the real openai backend (``lm.backend: openai``) pointed at the fake server, so the
request crosses real HTTP; the scripted reply is a correct solver, so the task's utility rises.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents_helpers import clean_env, lm_calls_of, load_run, stop_json, write_config

from lm.fake_server import FakeOpenAIServer

FENCE = "`" * 3

PARITY_SOLVER = f"""Idea: with no label noise, the secret subset is the one whose parity matches every
training label; try all 2**10 subsets at once.

{FENCE}python
import numpy as np


def algorithm(train_samples, train_parity, test_samples):
    train_samples = np.asarray(train_samples)
    n_bits = train_samples.shape[1]
    masks = (np.arange(2 ** n_bits)[:, None] >> np.arange(n_bits)) & 1
    fits = np.all((train_samples @ masks.T) % 2 == np.asarray(train_parity)[:, None], axis=0)
    best = masks[int(np.argmax(fits))]
    return (np.asarray(test_samples) @ best) % 2
{FENCE}
"""

BUDGET = {"responses_per_call": 2, "lm_calls": 1, "utility_calls": 2}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    srv = FakeOpenAIServer(replies=lambda body: [PARITY_SOLVER] * int(body.get("n") or 1), api_key="test")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _improve(db: Path, config: Path) -> dict[str, Any]:
    return stop_json(
        ["improve", "--task", "parity_noiseless", "--store", str(db), "--config", str(config)],
        env=clean_env({"OPENAI_API_KEY": "test"}),
    )


def test_scripted_better_solution_raises_utility(server: FakeOpenAIServer, tmp_path: Path) -> None:
    """A scripted brute-force parity solver, returned by the fake endpoint to the seed improver,
    raises parity_noiseless's utility on val and test (the coin-flip seed scores about 0.5, the
    solver 1.0); the log holds exactly the calls the server received: one ``lm.requested`` and
    one live ``lm.responded`` per chat request, none repeated. A second run with the same seed
    and config is answered from the LM cache: the server sees no new request."""
    config = write_config(
        tmp_path / "fake.json",
        {
            "lm": {
                "backend": "openai",
                "base_url": f"http://127.0.0.1:{server.port}/v1",
                "model": "fake-model",
                "max_attempts": 1,
            },
            "meta_utility": {"improver": BUDGET},
            "session_timeout_s": 120,
        },
    )
    db = tmp_path / "stop.db"
    out = _improve(db, config)
    s = out["summary"]
    assert out["status"] == "finished" and s["session_status"] == "ok"
    for split in ("val", "test"):
        assert s["after"][split] > s["before"][split], s
    assert s["after"]["val"] == pytest.approx(1.0) and s["after"]["test"] == pytest.approx(1.0)

    chats = [r for r in server.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == server.count() == 1  # nothing else was asked (no model listing, no retry)
    assert chats[0].authorization == "Bearer test"
    body = chats[0].body
    assert body is not None and body["model"] == "fake-model" and body["n"] == BUDGET["responses_per_call"]

    log = load_run(db, out["run_id"], blobs=[s["solution"]])
    assert log.root.payload["host"]["lm"]["kind"] != "offline"
    assert "api_key" not in json.dumps(log.root.payload["config"]).lower().replace("api_key_env", "")
    requested, responded = log.of("lm.requested"), log.of("lm.responded")
    assert len(requested) == len(responded) == len(chats)
    assert len({r.id for r in requested}) == len(requested)
    assert len({r.payload["cache_key"] for r in requested}) == len(requested)
    assert not log.of("lm.failed")
    for req in requested:
        (answer,) = log.children(req, {"lm.responded", "lm.failed"})
        assert answer.payload["source"] == "live"
        assert len(answer.payload["completions"]) == req.payload["request"]["n"]
        assert req.payload["request"]["messages"][-1]["content"] == body["messages"][-1]["content"]
    (session,) = log.of("session.requested")
    assert lm_calls_of(log, session) == 1
    # The solution the improver returned is the solver out of the reply's fenced block.
    assert "np.all((train_samples @ masks.T) % 2" in log.blobs[s["solution"]].decode()

    again = _improve(db, config)
    assert again["run_id"] != out["run_id"] and again["summary"]["after"] == s["after"]
    assert server.count("/v1/chat/completions") == 1  # answered from the log's LM cache
    log2 = load_run(db, again["run_id"])
    assert [r.payload["source"] for r in log2.of("lm.responded")] == ["cache"]
    assert len(log2.of("lm.requested")) == len(log2.of("lm.responded")) == 1
