"""A recorded offline self-improvement run shared by the replay tests (recorded once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from replay_helpers import run_stop, write_config


@pytest.fixture(scope="session")
def recorded_offline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One offline `stop self-improve` run, recorded with the real command."""
    d = tmp_path_factory.mktemp("recorded")
    cfg = write_config(d / "config.json")
    db = d / "stop.db"
    done = run_stop("self-improve", "--config", str(cfg), "--store", str(db), "--json", "--no-progress")
    assert done.returncode == 0, done.stderr
    return db
