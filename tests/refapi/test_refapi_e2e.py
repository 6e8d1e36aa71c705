"""A reference-style improver (``from helpers import extract_code``, own counters compared with
``utility.budget`` / ``language_model.budget``) runs unchanged via ``stop improve --improver
FILE.py`` against the fake OpenAI endpoint on 127.0.0.1 and spends exactly its budgets."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from lm.fake_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]
F = "`" * 3
SOLVER = f"""Brute force over all subsets.

{F}python
import numpy as np


def algorithm(train_samples, train_parity, test_samples):
    x = np.asarray(train_samples)
    masks = (np.arange(2 ** x.shape[1])[:, None] >> np.arange(x.shape[1])) & 1
    fits = np.all((x @ masks.T) % 2 == np.asarray(train_parity)[:, None], axis=0)
    return (np.asarray(test_samples) @ masks[int(np.argmax(fits))]) % 2
{F}
"""
BUDGET = {"responses_per_call": 2, "lm_calls": 2, "utility_calls": 3}


def test_reference_style_improver_spends_exactly_its_budgets(tmp_path: Path) -> None:
    server = FakeOpenAIServer(
        replies=lambda body: [SOLVER, "no code, only prose"][: int(body.get("n") or 1)], api_key="t"
    )
    server.start()
    try:
        config = tmp_path / "c.json"
        config.write_text(
            json.dumps(
                {
                    "lm": {"backend": "openai", "base_url": f"http://127.0.0.1:{server.port}/v1", "model": "fake"},
                    "meta_utility": {"improver": BUDGET},
                    "session_timeout_s": 120,
                }
            )
        )
        db = tmp_path / "stop.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")} | {"OPENAI_API_KEY": "t"}
        program = Path(__file__).parent / "programs" / "reference_style_improver.py"
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "cli.main", "improve", "--task", "parity_noiseless", "--store", str(db)),
                *("--config", str(config), "--improver", str(program), "--json", "--no-progress"),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=400,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout)
        s = out["summary"]
        assert out["status"] == "finished" and s["session_status"] == "ok", s
        assert s["after"]["val"] == 1.0 and s["after"]["val"] > s["before"]["val"]
        assert server.count("/v1/chat/completions") == BUDGET["lm_calls"]
    finally:
        server.stop()
    con = sqlite3.connect(db)
    types = [r[0] for r in con.execute("select type from events")]
    con.close()
    # The session's own utility calls (3) plus before/after val+test scoring (4).
    assert types.count("utility.requested") == BUDGET["utility_calls"] + 4
    assert types.count("budget.exceeded") == 0
