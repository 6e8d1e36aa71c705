"""``stop sandbox run`` and ``stop doctor`` through their registered handlers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from sandbox_helpers import skip_unless
from structlog.testing import capture_logs

from cli import sandbox_cmd


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stop")
    sandbox_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_sandbox_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    skip_unless("any")
    program = tmp_path / "cand.py"
    program.write_text("import os\ndef f(x):\n    print('score: 1.0')\n    return x * 2\n")
    args = parse(["sandbox", "run", str(program), "--function", "f", "--args-json", "[21]", "--json"])
    with capture_logs():  # the CLI sends logs to stderr; here structlog is unconfigured
        assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and out["value"] == 42 and out["stdout"] == "score: 1.0\n"
    assert out["findings"] == [] and out["layers"]["isolated"] is True


def test_sandbox_run_human_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    skip_unless("any")
    program = tmp_path / "bad.py"
    program.write_text("import subprocess\nsubprocess.run(['sh'])\n")
    args = parse(["sandbox", "run", str(program)])
    with capture_logs():
        assert args.func(args) == 1
    text = capsys.readouterr().out
    assert "status      error" in text and "seccomp:exec" in text and "process" in text


def test_doctor_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["doctor", "--json"])
    code = args.func(args)
    out = capsys.readouterr().out  # the worker start logs too when logging is not set up (no CLI main)
    data = json.loads(out[out.index("{\n") :])
    assert data["start"]["ok"] == data["usable"]
    assert set(data["layers"]) >= {"bubblewrap", "landlock", "seccomp"}
    assert code == (0 if data["usable"] else 3)
