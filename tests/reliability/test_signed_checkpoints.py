"""Signed checkpoints against an attacker who can edit the store: each attack on a real offline
run recorded with ``STOP_SIGNING_KEY`` is caught by ``stop audit`` without remembering a hash.

The attacks rewrite the SQLite file directly and recompute the whole hash chain with the
project's own ``chain_hash``, as anyone holding the file could. What the signature cannot do
(an unsigned run, a pin-less audit of a re-signed run) is asserted as well, so the limits stay
the ones the README states.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from events.model import GENESIS, Event, chain_hash
from events.signing import checkpoint_message, generate_key_file

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "golden" / "tiny.json"
#: Small enough that the tiny run (about 120 events) records periodic checkpoints too.
EVERY = 40

Row = dict[str, Any]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "STOP_CRASH", "STOP_SIGNING"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _stop(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env or _env(),
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key made by ``stop keygen`` (its directory is outside every store)."""
    key = tmp_path_factory.mktemp("keys") / "signing.key"
    done = _stop("keygen", str(key))
    assert done.returncode == 0, done.stderr
    return key


@pytest.fixture(scope="module")
def recorded(keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("signed")
    cfg = d / "config.json"
    cfg.write_text(json.dumps({**json.loads(TINY.read_text()), "checkpoint_every": EVERY}))
    db = d / "stop.db"
    done = _stop(
        "self-improve", "--config", str(cfg), "--store", str(db), "--no-progress", env=_env(STOP_SIGNING_KEY=str(keys))
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return db


@pytest.fixture
def db(recorded: Path, tmp_path: Path) -> Path:
    out = tmp_path / "stop.db"
    shutil.copy(recorded, out)
    return out


def _audit(db: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    done = _stop("audit", "latest", "--store", str(db), "--json", *extra, env=env)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}


def _rows(db: Path) -> list[Row]:
    conn = sqlite3.connect(db)
    try:
        cols = ["seq", "id", "run_id", "type", "version", "causation_id", "key", "payload"]
        out = [
            dict(zip(cols, r, strict=True)) for r in conn.execute(f"SELECT {', '.join(cols)} FROM events ORDER BY seq")
        ]
    finally:
        conn.close()
    for r in out:
        r["payload"] = json.loads(r["payload"])
    return out


def _rewrite(db: Path, edit: Callable[[list[Row]], list[Row]]) -> None:
    """Replace the run's events by ``edit(rows)`` and recompute the whole chain (prev_hash, hash)
    with the project's hash function: what an attacker holding the file can do."""
    rows = edit(_rows(db))
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM events")
        prev = GENESIS
        for r in rows:
            ev = Event(r["id"], r["run_id"], r["type"], r["version"], r["causation_id"], r["key"], r["payload"])
            h = chain_hash(prev, ev)
            conn.execute(
                "INSERT INTO events (seq, id, run_id, type, version, causation_id, key, payload, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r["seq"], ev.id, ev.run_id, ev.type, ev.version, ev.causation_id, ev.key, ev.payload_json, prev, h),
            )
            prev = h
    conn.close()


def _inflate_first_utility(rows: list[Row]) -> list[Row]:
    target = next(r for r in rows if r["type"] == "utility.evaluated")
    assert target["payload"]["utility"] != 1.0
    target["payload"]["utility"] = 1.0
    return rows


def _checkpoints(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r["type"] == "checkpoint.signed"]


# ---- the key and the intact run -----------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads_and_refuses_to_overwrite(keys: Path) -> None:
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in keys.read_text()
    public = Path(f"{keys}.pub").read_text().strip()
    assert public.startswith("ed25519:")
    again = _stop("keygen", str(keys))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr and "Traceback" not in again.stderr
    assert Path(f"{keys}.pub").read_text().strip() == public  # untouched
    other = keys.parent / "printed.key"
    made = _stop("keygen", str(other))
    assert made.returncode == 0 and made.stdout.strip() == Path(f"{other}.pub").read_text().strip()


def test_a_bad_signing_key_is_refused_before_anything_is_recorded(keys: Path, tmp_path: Path) -> None:
    loose = tmp_path / "loose.key"
    loose.write_bytes(keys.read_bytes())
    loose.chmod(0o644)
    for bad in (tmp_path / "missing.key", loose):
        db = tmp_path / "stop.db"
        done = _stop("self-improve", "--config", str(TINY), "--store", str(db), env=_env(STOP_SIGNING_KEY=str(bad)))
        assert done.returncode == 2 and str(bad) in done.stderr and "Traceback" not in done.stderr
        assert not db.exists()


def test_a_signed_run_records_periodic_and_end_checkpoints_and_audits_verified(recorded: Path, keys: Path) -> None:
    rows = _rows(recorded)
    cps = _checkpoints(rows)
    periodic = [c["payload"]["count"] for c in cps if not c["payload"]["end"]]
    assert periodic == [n for n in range(EVERY, len(rows), EVERY) if n <= periodic[-1]] and len(periodic) >= 2
    assert rows[-1]["type"] == "checkpoint.signed" and rows[-1]["payload"]["end"] == "run.finished"
    assert rows[-1]["payload"]["count"] == len(rows) - 1
    rc, report = _audit(recorded)
    cp = report["checkpoints"]
    assert rc == 0 and report["ok"] and cp["status"] == "verified"
    assert cp["signed"] == cp["verified"] == len(cps) and cp["pinned"] is None
    assert cp["end"]["end"] == "run.finished" and cp["end"]["count"] == len(rows) - 1
    assert {"chain", "head", "lm_cache", "blobs", "violations"} <= set(report)  # the existing keys stay
    rc, pinned = _audit(recorded, "--public-key", f"{keys}.pub")
    assert rc == 0 and pinned["checkpoints"]["pinned"] == cp["fingerprints"][0]
    rc, _ = _audit(recorded, env=_env(STOP_SIGNING_KEY=str(keys)))  # the key's public part pins too
    assert rc == 0
    text = _stop("audit", "latest", "--store", str(recorded)).stdout
    assert f"checkpoints: {len(cps)} signed, verified (key fingerprint {cp['fingerprints'][0]}" in text
    assert "rule: " in text


# ---- attacks ------------------------------------------------------------------------------------


def test_tail_cut_is_caught_by_the_signature_without_any_anchor(db: Path) -> None:
    n = len(_rows(db))
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM events WHERE seq > (SELECT MAX(seq) - 30 FROM events)")
    conn.close()
    rc, report = _audit(db)
    assert report["events"] == n - 30 and report["chain"]["ok"]  # the chain alone cannot tell
    assert rc == 1 and not report["ok"] and report["checkpoints"]["status"] == "broken"
    [problem] = report["checkpoints"]["problems"]
    assert "periodic" in problem["problem"] and "tail was cut" in problem["problem"]


def test_a_periodic_checkpoint_cannot_be_passed_off_as_the_end(db: Path) -> None:
    """Cut right after a periodic checkpoint and mark it as the run's end: ``end`` is signed."""

    def cut(rows: list[Row]) -> list[Row]:
        last_periodic = max(
            i for i, r in enumerate(rows) if r["type"] == "checkpoint.signed" and not r["payload"]["end"]
        )
        rows = rows[: last_periodic + 1]
        rows[-1]["payload"]["end"] = "run.finished"
        rows[-1]["payload"]["count"] = len(rows) - 1
        return rows

    _rewrite(db, cut)
    rc, report = _audit(db)
    assert rc == 1 and report["chain"]["ok"]
    assert any("signature does not verify" in p["problem"] for p in report["checkpoints"]["problems"])


def test_payload_edit_with_the_whole_chain_recomputed_is_caught_by_the_signatures(db: Path) -> None:
    _rewrite(db, _inflate_first_utility)
    rc, report = _audit(db)
    assert report["chain"]["ok"]  # recomputed: the chain alone cannot tell
    assert rc == 1 and not report["ok"]
    problems = report["checkpoints"]["problems"]
    assert problems and all("signed head" in p["problem"] for p in problems)


def test_resigning_with_another_key_is_caught_by_the_pinned_key(db: Path, keys: Path, tmp_path: Path) -> None:
    forger = generate_key_file(tmp_path / "forger.key")

    def forge(rows: list[Row]) -> list[Row]:
        rows = _inflate_first_utility(rows)
        heads: list[str] = []
        for r in rows:  # the recomputed chain, each checkpoint re-signed over its new head
            if r["type"] == "checkpoint.signed":
                p = r["payload"]
                p["head"], p["public_key"], p["fingerprint"] = (
                    heads[p["count"] - 1],
                    forger.public_key,
                    forger.fingerprint,
                )
                p["signature"] = forger.sign(checkpoint_message(r["run_id"], p["count"], p["head"], p["end"]))
            ev = Event(r["id"], r["run_id"], r["type"], r["version"], r["causation_id"], r["key"], r["payload"])
            heads.append(chain_hash(heads[-1] if heads else GENESIS, ev))
        return rows

    _rewrite(db, forge)
    rc, unpinned = _audit(db)
    cp = unpinned["checkpoints"]
    # Without a pin the forgery verifies under the forger's key: the audit says whose it is.
    assert rc == 0 and cp["status"] == "verified" and cp["fingerprints"] == [forger.fingerprint]
    rc, report = _audit(db, "--public-key", f"{keys}.pub")
    assert rc == 1 and not report["ok"]
    assert all(
        f"signed by key {forger.fingerprint}, not by the pinned key" in p["problem"]
        for p in report["checkpoints"]["problems"]
    )
    rc, _ = _audit(db, env=_env(STOP_SIGNING_KEY=str(keys)))
    assert rc == 1


def test_stripped_checkpoints_pass_as_unsigned_only_without_a_pinned_key(db: Path, keys: Path) -> None:
    _rewrite(db, lambda rows: [r for r in _inflate_first_utility(rows) if r["type"] != "checkpoint.signed"])
    rc, report = _audit(db)
    assert rc == 0 and report["checkpoints"]["status"] == "unsigned"  # indistinguishable from a keyless run
    rc, report = _audit(db, "--public-key", f"{keys}.pub")
    assert rc == 1 and "no checkpoint signed by the pinned key" in report["checkpoints"]["problems"][0]["problem"]


def test_rewritten_cache_row_of_a_signed_run_is_caught(db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        key, value = conn.execute("SELECT key, value FROM lm_cache ORDER BY key LIMIT 1").fetchone()
        record = json.loads(value)
        record["completions"][0]["text"] += "\nimport os\n"
        conn.execute("UPDATE lm_cache SET value = ? WHERE key = ?", (json.dumps(record), key))
    conn.close()
    rc, report = _audit(db)
    # The cache is outside the chain and the signatures; its rows are checked against their events.
    assert rc == 1 and report["checkpoints"]["ok"]
    assert [p["key"] for p in report["lm_cache"]["problems"]] == [key]


def test_unsigned_run_edit_with_recomputed_chain_is_caught_only_by_the_head_anchor(db: Path) -> None:
    """The same edit on a run without checkpoints: nothing but ``--head`` can tell."""
    _rewrite(db, lambda rows: [r for r in rows if r["type"] != "checkpoint.signed"])
    rc, clean = _audit(db)
    assert rc == 0 and clean["checkpoints"]["status"] == "unsigned"
    _rewrite(db, _inflate_first_utility)
    rc, report = _audit(db)
    assert rc == 0 and report["chain"]["ok"]  # undetectable without an anchor or a key
    rc, report = _audit(db, "--head", clean["head"]["hash"])
    assert rc == 1 and not report["head"]["ok"]


# ---- replay -------------------------------------------------------------------------------------


def test_replay_of_a_signed_run_needs_no_key_and_does_not_diverge(db: Path) -> None:
    done = _stop("replay", "latest", "--store", str(db), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["identical"] and result["divergences"] == 0


# ---- how a run ends -----------------------------------------------------------------------------


def _signed_config(d: Path, **extra: Any) -> Path:
    cfg = d / "config.json"
    cfg.write_text(json.dumps({**json.loads(TINY.read_text()), "checkpoint_every": EVERY, **extra}))
    return cfg


def _wait_for_checkpoint(db: Path, proc: subprocess.Popen[str], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its first periodic checkpoint"
        if db.exists():
            conn = sqlite3.connect(db)
            try:
                n = conn.execute("SELECT COUNT(*) FROM events WHERE type = 'checkpoint.signed'").fetchone()[0]
            except sqlite3.OperationalError:  # the schema is not there yet
                n = 0
            finally:
                conn.close()
            if n:
                return
        time.sleep(0.05)
    raise AssertionError("no checkpoint within the timeout")


def test_an_interrupted_run_signs_its_interruption_and_resume_signs_its_end(keys: Path, tmp_path: Path) -> None:
    cfg = _signed_config(tmp_path, generations=2)
    db = tmp_path / "stop.db"
    env = _env(STOP_SIGNING_KEY=str(keys))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "self-improve", "--config", str(cfg), "--store", str(db), "--no-progress"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_checkpoint(db, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err[-3000:]
    rows = _rows(db)
    assert rows[-1]["type"] == "checkpoint.signed" and rows[-1]["payload"]["end"] == "interrupted"
    rc, report = _audit(db)
    assert rc == 0 and report["status"] == "unfinished" and report["checkpoints"]["end"]["end"] == "interrupted"
    interrupted_head = report["head"]["hash"]

    done = _stop("resume", "latest", "--store", str(db), "--no-progress", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rc, report = _audit(db, "--public-key", f"{keys}.pub")
    ends = [c["payload"]["end"] for c in _checkpoints(_rows(db)) if c["payload"]["end"]]
    assert rc == 0 and report["status"] == "finished" and ends == ["interrupted", "run.finished"]
    final_head = report["head"]["hash"]

    # The limit of signatures: a cut back to exactly the signed interruption is a valid, shorter
    # signed run. The audit says its signed end is an interruption; only --head tells it was cut.
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM events WHERE seq > (SELECT seq FROM events WHERE hash = ?)", (interrupted_head,))
    conn.close()
    rc, report = _audit(db)
    assert rc == 0 and report["checkpoints"]["end"]["end"] == "interrupted"
    rc, report = _audit(db, "--head", final_head)
    assert rc == 1 and not report["head"]["ok"]


def test_a_run_stopped_at_its_spend_cap_signs_that_end(keys: Path, tmp_path: Path) -> None:
    db = tmp_path / "stop.db"
    done = _stop(
        "self-improve",
        "--config",
        str(_signed_config(tmp_path)),
        "--store",
        str(db),
        "--no-progress",
        "--max-lm-calls",
        "1",
        env=_env(STOP_SIGNING_KEY=str(keys)),
    )
    assert done.returncode == 1 and "budget" in done.stderr.lower(), done.stderr[-3000:]
    rc, report = _audit(db, "--public-key", f"{keys}.pub")
    assert rc == 0 and report["checkpoints"]["end"]["end"] == "budget.exhausted"
