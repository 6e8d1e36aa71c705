"""A recorded log checked in as a fixture, so every change of an event's shape is upcast-tested
on real data: ``python tests/golden/golden_log.py record`` writes ``quickstart-v1.jsonl.gz`` from
a fresh offline run of ``tiny.json`` (do this only when adding a new golden version; old ones stay).

The file is JSON lines: ``{"event": {...}}`` rows in store order (with the recorded hashes),
``{"blob": hash, "data": base64}`` and ``{"cache": key, "value": {...}}``.
"""

from __future__ import annotations

import base64
import gzip
import json
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from events import Event
from store import SqliteStore

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "quickstart-v1.jsonl.gz"
_FIELDS = ("id", "run_id", "type", "version", "causation_id", "key", "payload", "prev_hash", "hash")


def export(db: Path, out: Path) -> None:
    """Every event, blob and cache row of ``db`` (read directly: this is a fixture writer)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows: list[dict[str, Any]] = []
    for r in conn.execute(f"SELECT {', '.join(_FIELDS)} FROM events ORDER BY seq"):
        ev = dict(zip(_FIELDS, r, strict=True))
        ev["payload"] = json.loads(ev["payload"])
        rows.append({"event": ev})
    for digest, data in conn.execute("SELECT hash, data FROM blobs ORDER BY hash"):
        rows.append({"blob": digest, "data": base64.b64encode(data).decode("ascii")})
    for key, value in conn.execute("SELECT key, value FROM lm_cache ORDER BY key"):
        rows.append({"cache": key, "value": json.loads(value)})
    conn.close()
    with gzip.open(out, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


def rows(path: Path = GOLDEN) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


async def load(store: SqliteStore, path: Path = GOLDEN) -> list[Event]:
    """Append the fixture to ``store`` through its public API; the events as stored."""
    data = rows(path)
    for row in data:
        if "blob" in row:
            await store.put_blob(base64.b64decode(row["data"]))
        elif "cache" in row:
            await store.cache_put(row["cache"], row["value"])
    recorded = [row["event"] for row in data if "event" in row]
    events = [Event(**{k: ev[k] for k in _FIELDS if k not in ("prev_hash", "hash")}) for ev in recorded]
    return await store.append(events)


def record() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "golden.db"
        subprocess.run(
            [sys.executable, "-m", "cli.main", "self-improve", "--config", str(HERE / "tiny.json"), "--store", str(db)],
            check=True,
        )
        export(db, GOLDEN)


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        sys.exit("usage: python tests/golden/golden_log.py record")
    record()
