"""``configs/paper.toml`` loads, holds the reference's settings, and ``--help`` points to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agents.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_paper_config_has_the_reference_settings() -> None:
    c = load_config(REPO / "configs" / "paper.toml")
    assert c.generations == 6 and c.adopt == "nonzero" and c.max_tokens == 1024
    m = c.meta_utility
    assert m.tasks == ("parity_noise",) and m.runs == 5 and m.meta_utility_budget == 25
    assert (m.improver.responses_per_call, m.improver.lm_calls, m.improver.utility_calls) == (6, 4, 25)


def test_help_documents_the_paper_config() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "self-improve", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    assert "configs/paper.toml" in out
