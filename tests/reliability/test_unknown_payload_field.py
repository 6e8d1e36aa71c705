"""A stored payload with a field its type does not know (hand-edited, or written by a newer
version): ``audit`` names the event and the field as a finding (exit 1) and still checks the
chain; other read commands stop with one line (exit 2), never a traceback."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inspect"))

from inspect_synth import self_improve_run, write

from events.codec import canonical_json
from events.model import GENESIS, Event, chain_hash
from store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]


def _stop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _db(path: Path) -> Path:
    async def body() -> None:
        store = await SqliteStore.open(path)
        try:
            await write(store, self_improve_run("run-a"))
        finally:
            await store.aclose()

    anyio.run(body)
    return path


def _add_field(db: Path, event_type: str, *, rechain: bool) -> str:
    """Give the first ``event_type`` event's payload a field ``from_the_future``; with
    ``rechain``, recompute every hash after it as a newer writer would have stored them."""
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT seq, id, run_id, type, version, causation_id, key, payload FROM events ORDER BY seq"
    ).fetchall()
    target = next(r for r in rows if r[3] == event_type)
    heads: dict[str, str] = {}
    with con:
        for seq, eid, run_id, typ, version, cause, key, payload in rows:
            data = json.loads(payload)
            if seq == target[0]:
                data["from_the_future"] = 1
            ev = Event(id=eid, run_id=run_id, type=typ, version=version, causation_id=cause, key=key, payload=data)
            prev = heads.get(run_id, GENESIS)
            heads[run_id] = chain_hash(prev, ev)
            if seq == target[0] and not rechain:
                con.execute("UPDATE events SET payload = ? WHERE seq = ?", (canonical_json(data), seq))
            elif rechain:
                con.execute(
                    "UPDATE events SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                    (canonical_json(data), prev, heads[run_id], seq),
                )
    con.close()
    return str(target[1])


@pytest.mark.parametrize("event_type", ["session.completed", "run.started", "utility.evaluated"])
def test_newer_writer_field_is_an_audit_finding_and_one_line_elsewhere(tmp_path: Path, event_type: str) -> None:
    db = _db(tmp_path / "stop.db")
    assert _stop("audit", "run-a", "--store", str(db)).returncode == 0
    ev_id = _add_field(db, event_type, rechain=True)

    done = _stop("audit", "run-a", "--store", str(db), "--json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    out = json.loads(done.stdout)
    assert out["chain"]["ok"] is True  # the chain was checked, and it holds
    [finding] = out["unreadable"]
    assert finding["id"] == ev_id and "from_the_future" in finding["reason"] and event_type in finding["reason"]
    text = _stop("audit", "run-a", "--store", str(db))
    assert text.returncode == 1 and f"BROKEN event {ev_id}" in text.stdout and "from_the_future" in text.stdout

    for cmd in (["lineage", "run-a"], ["report", "run-a", "-o", str(tmp_path / "r.html")], ["diff", "run-a", "run-a"]):
        done = _stop(*cmd, "--store", str(db))
        assert "Traceback" not in done.stderr, (cmd, done.stderr)
        if done.returncode != 0:  # a command that reads the event typed stops at it, in one line
            errors = [line for line in done.stderr.splitlines() if line.startswith("stop: error:")]
            assert len(errors) == 1 and ev_id in errors[0] and "from_the_future" in errors[0], (cmd, done.stderr)
    if event_type == "session.completed":  # the lineage reads every meta-run session's outcome typed
        done = _stop("lineage", "run-a", "--store", str(db))
        # either it stops in one line, or it shows the session as one it could not read
        assert ev_id in (done.stderr if done.returncode else done.stdout), done.stdout + done.stderr


def test_hand_edited_field_breaks_the_chain_and_is_named(tmp_path: Path) -> None:
    db = _db(tmp_path / "stop.db")
    ev_id = _add_field(db, "session.completed", rechain=False)
    done = _stop("audit", "run-a", "--store", str(db), "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    out = json.loads(done.stdout)
    assert out["chain"]["ok"] is False and out["chain"]["broken_at"] == ev_id
    assert [u["id"] for u in out["unreadable"]] == [ev_id]
