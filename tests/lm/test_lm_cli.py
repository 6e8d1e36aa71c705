"""``stop lm`` commands (run in-process through cli.lm_cmd's handlers)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lmtest_helpers import PROGRAMS

from cli import lm_cmd
from lm.fake_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    lm_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_show_offline(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(var, raising=False)
    args = parse(["lm"])
    assert args.func(args) == 0
    assert "offline, no language model" in capsys.readouterr().out


def test_check_and_propose_against_fake_endpoint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-secret")
    with FakeOpenAIServer(models=["fake-model"], replies=["Idea: x.\n```python\ndef f():\n    return 1\n```"]) as srv:
        args = parse(["lm", "check", "--base-url", srv.base_url, "--model", "fake-model"])
        assert args.func(args) == 0
        args = parse(
            [
                "lm",
                "propose",
                str(PROGRAMS / "lpn_seed.py"),
                "-n",
                "2",
                "--base-url",
                srv.base_url,
                "--model",
                "fake-model",
            ]
        )
        assert args.func(args) == 0
        assert srv.counts() == {"/v1/chat/completions": 2}
    captured = capsys.readouterr()
    assert "ok:" in captured.out and "proposal 1" in captured.out
    assert "sk-cli-secret" not in captured.out + captured.err


def _stop_lm_check(base_url: str, model: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_API_KEY"] = "sk-cli-secret"
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "lm", "check", "--base-url", base_url, "--model", model, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_check_calls_chat_completions_and_reports_what_works() -> None:
    with FakeOpenAIServer(models=["fake-model"], ignore_n=True) as srv:
        proc = _stop_lm_check(srv.base_url, "fake-model")
        bodies = srv.bodies
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["n_honoured"] is False and report["usage_reported"] is True
    assert report["seed_accepted"] is True and report["latency_s"] > 0
    assert bodies[0]["n"] == 2 and bodies[0]["seed"] == 1 and bodies[0]["model"] == "fake-model"


def test_check_unknown_model_fails_with_the_endpoints_error() -> None:
    with FakeOpenAIServer(models=["fake-model"]) as srv:
        proc = _stop_lm_check(srv.base_url, "nosuch")
    assert proc.returncode == 1
    assert "The model `nosuch` does not exist (fake)" in proc.stderr and "HTTP 404" in proc.stderr
    assert "Traceback" not in proc.stderr and "sk-cli-secret" not in proc.stderr + proc.stdout
