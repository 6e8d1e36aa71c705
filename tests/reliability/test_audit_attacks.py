"""Attacks on a recorded run that ``stop audit`` must catch: a cut tail, a rewritten LM cache
row, and a payload edit with the whole hash chain recomputed (caught by the head anchor)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from events.model import Event, chain_hash

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "golden" / "tiny.json"


def _stop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**{k: v for k, v in os.environ.items() if k != "STOP_SIGNING_KEY"}, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("rec") / "stop.db"
    done = _stop("self-improve", "--config", str(TINY), "--store", str(db), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    return db


@pytest.fixture
def db(recorded: Path, tmp_path: Path) -> Path:
    out = tmp_path / "stop.db"
    shutil.copy(recorded, out)
    return out


def _audit(db: Path, *extra: str) -> tuple[int, dict]:
    done = _stop("audit", "latest", "--store", str(db), "--json", *extra)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}


def test_intact_run_passes_and_prints_its_head(db: Path) -> None:
    rc, report = _audit(db)
    assert rc == 0 and report["ok"]
    assert report["head"]["hash"] and report["head"]["events"] == report["events"]
    assert report["lm_cache"]["checked"] > 0 and not report["lm_cache"]["problems"]
    rc, _ = _audit(db, "--head", report["head"]["hash"])
    assert rc == 0
    text = _stop("audit", "latest", "--store", str(db)).stdout
    assert f"head: {report['head']['hash']} ({report['events']} events)" in text


def test_tail_cut_is_caught_by_the_head_anchor(db: Path) -> None:
    _, before = _audit(db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM events WHERE seq > (SELECT MAX(seq) - 30 FROM events)")
    conn.close()
    rc, report = _audit(db, "--head", before["head"]["hash"])
    assert rc == 1 and not report["head"]["ok"]
    assert report["events"] == before["events"] - 30


def test_rewritten_cache_row_is_caught(db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        key, value = conn.execute("SELECT key, value FROM lm_cache ORDER BY key LIMIT 1").fetchone()
        record = json.loads(value)
        record["completions"][0]["text"] += "\nimport os; os.system('echo pwned')\n"
        conn.execute("UPDATE lm_cache SET value = ? WHERE key = ?", (json.dumps(record), key))
    conn.close()
    rc, report = _audit(db)
    assert rc == 1 and not report["ok"]
    [problem] = report["lm_cache"]["problems"]
    assert problem["key"] == key and "text differs" in problem["problem"]
    # A fork sharing that answer refuses to reuse it.
    conn = sqlite3.connect(db)
    last = conn.execute("SELECT id FROM events ORDER BY seq DESC LIMIT 1").fetchone()[0]
    conn.close()
    done = _stop("fork", "latest", "--at", last, "--store", str(db), "--no-progress")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "refusing to fork" in done.stderr and "Traceback" not in done.stderr


def test_payload_edit_with_recomputed_chain_is_caught_by_the_head_anchor(db: Path) -> None:
    _, before = _audit(db)
    conn = sqlite3.connect(db)
    with conn:
        rows = conn.execute(
            "SELECT seq, id, run_id, type, version, causation_id, key, payload FROM events ORDER BY seq"
        ).fetchall()
        prev = "0" * 64
        forged = 0
        for seq, eid, run_id, typ, version, cause, key, payload in rows:
            data = json.loads(payload)
            if typ == "utility.evaluated" and not forged:  # inflate a score
                data["utility"] = 1.0
                forged += 1
            ev = Event(eid, run_id, typ, version, cause, key, data)
            h = chain_hash(prev, ev)
            conn.execute(
                "UPDATE events SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?", (ev.payload_json, prev, h, seq)
            )
            prev = h
    conn.close()
    assert forged == 1
    rc, unanchored = _audit(db)
    assert unanchored["chain"]["ok"]  # the chain alone cannot tell: it was recomputed
    # Recorded without STOP_SIGNING_KEY: no signature to check, and the audit says so.
    assert rc == 0 and unanchored["checkpoints"]["status"] == "unsigned"
    rc, report = _audit(db, "--head", before["head"]["hash"])
    assert rc == 1 and not report["head"]["ok"]
