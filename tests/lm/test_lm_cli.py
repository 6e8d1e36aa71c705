"""``stop lm`` commands (run in-process through cli.lm_cmd's handlers)."""

from __future__ import annotations

import argparse

import pytest
from lmtest_helpers import PROGRAMS

from cli import lm_cmd
from lm.fake_server import FakeOpenAIServer


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
        assert srv.counts() == {"/v1/models": 1, "/v1/chat/completions": 1}
    captured = capsys.readouterr()
    assert "ok:" in captured.out and "proposal 1" in captured.out
    assert "sk-cli-secret" not in captured.out + captured.err
