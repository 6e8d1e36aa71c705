"""`stop tasks`, `stop tasks show NAME` and `stop score` through argparse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from cli.main import main
from tasks import all_tasks, get_task


def run(argv: list[str]) -> int:
    with structlog.testing.capture_logs():  # logs belong on stderr; keep stdout pure here
        return main(argv)


def test_tasks_lists_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["tasks"]) == 0
    out = capsys.readouterr().out
    for task in all_tasks():
        assert task.name in out
    assert "meta_improver" in out


def test_tasks_show_prints_the_improver_text_splits_and_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["tasks", "show", "maxcut"]) == 0
    out = capsys.readouterr().out
    assert get_task("maxcut").description in out
    assert "val 100 instances" in out and "0.1 s" in out
    assert run(["tasks", "show", "parity_noise", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"] == {"val": 20, "test": 50} and info["time_limit_s"] == 2.0
    assert run(["tasks", "show", "meta_improver"]) == 0
    assert "improve_algorithm" in capsys.readouterr().out


def test_unknown_task_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["tasks", "show", "nope"]) == 2
    assert "known tasks: parity_noise" in capsys.readouterr().err


def test_score_prints_json_with_per_instance_outcomes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    solution = tmp_path / "seed.py"
    solution.write_text(get_task("str_grid_dist").seed_solution)
    assert run(["score", "--task", "str_grid_dist", "--split", "test", str(solution), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"task", "split", "utility", "instances"}
    assert round(data["utility"], 3) == 0.439 and len(data["instances"]) == 50
    assert run(["score", "--task", "str_grid_dist", "--split", "val", str(solution)]) == 0
    out = capsys.readouterr().out
    assert "utility 0.4829" in out and "exact distance" in out


def test_score_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["score", "--task", "maxcut", str(tmp_path / "missing.py")]) == 2
    assert "cannot read" in capsys.readouterr().err
