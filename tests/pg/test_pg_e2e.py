"""The offline STOP loop on PostgreSQL: the same log as on SQLite; replay, audit, copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents_helpers import REPO, clean_env, stop_cli
from pgserver import PgServer

from events import Event
from store import open_store

QUICKSTART = str(REPO / "configs" / "quickstart.json")


async def _events(target: str, run_id: str) -> list[Event]:
    async with await open_store(target, create=False) as s:
        return await s.read(run_id)


def _comparable(events: list[Event]) -> dict[str, Any]:
    """What replay compares: each event by identity, its content without wall-clock fields.
    Scheduling (claims, renewals) is left out since who ran what may differ between two live
    runs, and so is the interleaving of concurrent agents in the log (each run's own order is
    its hash chain, checked by the audit)."""
    return {e.id: e.comparable() for e in events if not e.type.startswith("work.")}


def _run(store: str, env: dict[str, str]) -> str:
    proc = stop_cli(["self-improve", "--config", QUICKSTART, "--store", store, "--json", "--no-progress"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["status"] == "finished"
    return str(out["run_id"])


@pytest.fixture(scope="module")
def two_runs(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """The quickstart run on a fresh PostgreSQL store and on a SQLite file."""
    url = anyio.run(pg_server.fresh_url)
    env = clean_env({"PGPASSWORD": pg_server.env()["PGPASSWORD"]})
    db = str(tmp_path_factory.mktemp("sqlite") / "stop.db")
    run_pg = _run(url, env)
    run_lite = _run(db, env)
    assert run_pg == run_lite  # the run id derives from command, config and seed
    return url, db, run_pg


def test_self_improve_on_postgres_equals_sqlite_event_for_event(two_runs: tuple[str, str, str]) -> None:
    url, db, run_id = two_runs
    on_pg = anyio.run(_events, url, run_id)
    on_lite = anyio.run(_events, db, run_id)
    assert len(on_pg) > 100
    a, b = _comparable(on_pg), _comparable(on_lite)
    assert a.keys() == b.keys()
    for event_id in a:
        assert a[event_id] == b[event_id], event_id
    assert on_pg[-1].type == "run.finished"


def test_audit_and_workers_on_postgres(two_runs: tuple[str, str, str], pg_server: PgServer) -> None:
    url, _, run_id = two_runs
    env = clean_env({"PGPASSWORD": pg_server.env()["PGPASSWORD"]})
    audit = stop_cli(["audit", run_id, "--store", url, "--json"], env=env)
    assert audit.returncode == 0, audit.stderr[-3000:]
    report = json.loads(audit.stdout)
    assert report["chain"]["ok"] and not report["blobs"]["problems"] and report["blobs"]["checked"] > 0
    workers = stop_cli(["runs", "--workers", "--store", url, "--json"], env=env)
    assert workers.returncode == 0, workers.stderr[-2000:]
    seen = json.loads(workers.stdout)
    assert {w["agent"] for w in seen} >= {"proposer", "sandbox-runner"} and all(w["host"] for w in seen)


def test_store_copy_round_trip(two_runs: tuple[str, str, str], pg_server: PgServer, tmp_path: Path) -> None:
    """SQLite -> a new PostgreSQL store -> a new SQLite file: the same chain hash for hash, and
    the copy on PostgreSQL replays identically; copying again is a no-op."""
    _, db, run_id = two_runs
    env = clean_env({"PGPASSWORD": pg_server.env()["PGPASSWORD"]})
    url2 = anyio.run(pg_server.fresh_url)
    back = str(tmp_path / "back.db")
    for src, dst in ((db, url2), (url2, back), (db, url2)):
        proc = stop_cli(["store", "copy", src, dst, "--run", run_id, "--json"], env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout)
        assert out["ok"] and out["runs"][0]["verified"] and out["runs"][0]["blobs"] > 0
        assert "stop-test-pw" not in proc.stdout + proc.stderr
    original = anyio.run(_events, db, run_id)
    for target in (url2, back):
        assert [(e.id, e.hash) for e in anyio.run(_events, target, run_id)] == [(e.id, e.hash) for e in original]
    replay = stop_cli(["replay", run_id, "--store", url2], env=env, timeout=200)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "identical" in replay.stdout + replay.stderr


def test_store_copy_names_a_broken_source(pg_server: PgServer, tmp_path: Path) -> None:
    """A tampered source chain is not copied, and the command says so with exit 1."""
    import sqlite3

    from events import make_event
    from events.types import Note, RunStarted

    db = tmp_path / "src.db"

    async def seed() -> None:
        async with await open_store(str(db)) as s:
            root = make_event("r", RunStarted("t", 0, {}, {}), cause=None, key=0)
            await s.append([root, make_event("r", Note("n", {}), cause=root, key=1)])

    anyio.run(seed)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET payload = replace(payload, '\"n\"', '\"m\"') WHERE seq = 2")
    env = clean_env({"PGPASSWORD": pg_server.env()["PGPASSWORD"]})
    proc = stop_cli(["store", "copy", str(db), anyio.run(pg_server.fresh_url)], env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "chain broken" in proc.stdout
