"""The real offline ``stop self-improve`` job (tiny budgets), then audit, lineage and report.

Runs the command in a subprocess, as a user would. Skipped only if the run commands are not
part of this tree.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from inspect_browser import browse, rendered_counts
from inspect_cli import run_cli

TINY = {
    "generations": 1,
    "meta_utility": {
        "tasks": ["parity_noise"],
        "runs": 1,
        "meta_utility_budget": 2,
        "improver": {"responses_per_call": 2, "lm_calls": 1, "utility_calls": 2},
    },
    "session_timeout_s": 120,
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    tmp = tmp_path_factory.mktemp("e2e")
    config = tmp / "tiny.json"
    config.write_text(json.dumps(TINY))
    db = tmp / "stop.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "self-improve",
            "--store",
            str(db),
            "--config",
            str(config),
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return db, json.loads(proc.stdout)


def _count(db: Path, run_id: str, type_: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(
            conn.execute("SELECT COUNT(*) FROM events WHERE run_id = ? AND type = ?", (run_id, type_)).fetchone()[0]
        )
    finally:
        conn.close()


def test_audit_lineage_report_of_a_real_run(
    real_run: tuple[Path, dict[str, object]], tmp_path: Path, chromium: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db, summary = real_run
    run_id = str(summary["run_id"])
    assert run_cli(["audit", run_id[:16], "--store", str(db), "--json"]) == 0
    audit = json.loads(capsys.readouterr().out)
    assert audit["ok"] and audit["run_id"] == run_id and audit["status"] == "finished"
    lm = audit["lm"]["total"]
    assert lm["calls"] == _count(db, run_id, "lm.requested") >= 1
    assert lm["offline"] == lm["calls"] and lm["cost_usd"] == 0  # the offline model costs nothing
    assert audit["violations"]["proposals"] == _count(db, run_id, "program.scanned")
    assert sum(v["calls"] for v in audit["lm"]["by_generation"].values()) == lm["calls"]
    assert sum(v["calls"] for v in audit["lm"]["by_node"].values()) == lm["calls"]

    assert run_cli(["lineage", "latest", "--store", str(db), "--json"]) == 0
    lineage = json.loads(capsys.readouterr().out)
    (seed,) = [n for n in lineage["nodes"] if n["status"] == "seed"]
    gens = summary["summary"]["generations"]  # type: ignore[index]
    assert seed["val"] == pytest.approx(gens[0]["meta_val"]) and seed["test"] == pytest.approx(gens[0]["meta_test"])
    decided = [n for n in lineage["nodes"] if n["status"] in ("adopted", "rejected")]
    assert len(decided) == _count(db, run_id, "improver.decided")
    assert all(e["parent"] in {n["id"] for n in lineage["nodes"]} for e in lineage["edges"])
    if decided:
        assert run_cli(["lineage", "latest", "--store", str(db), "--show", decided[0]["program"][:12]]) == 0
        assert "# diff against parent program" in capsys.readouterr().out

    out = tmp_path / "report.html"
    assert run_cli(["report", "latest", "--store", str(db), "-o", str(out)]) == 0
    dom = browse(chromium, tmp_path, out, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    counts = rendered_counts(dom.stdout)
    assert counts["nodes"] == len(lineage["nodes"]) and counts["points"] >= 2
    shot = tmp_path / "real-run.png"
    assert browse(chromium, tmp_path, out, f"--screenshot={shot}").returncode == 0 and shot.exists()
    print(f"screenshot: {shot}")

    # and the real log is tamper-evident too
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE events SET payload = replace(payload, '\"ok\"', '\"OK\"') "
            "WHERE run_id = ? AND type = 'session.completed'",
            (run_id,),
        )
    conn.close()
    assert run_cli(["audit", run_id, "--store", str(db)]) == 1
    assert "BROKEN hash chain" in capsys.readouterr().out
