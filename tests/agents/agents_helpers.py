"""Helpers for the agents tests: run the ``stop`` CLI in a subprocess and read a run's log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from events import Event
from store import SqliteStore

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without any LM endpoint settings (offline unless ``extra`` says so)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(extra or {})
    return env


def stop_cli(
    args: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    """``stop ARGS`` as a user runs it (a fresh interpreter, the repository as working dir)."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else clean_env(),
    )


def stop_json(args: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 150) -> dict[str, Any]:
    """Run a command with ``--json --no-progress`` and parse its summary; fail with its stderr."""
    proc = stop_cli([*args, "--json", "--no-progress"], env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


@dataclass
class RunLog:
    """One run's events with the lookups the assertions need."""

    events: list[Event]
    blobs: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {e.id: e for e in self.events}
        self.kids: dict[str, list[Event]] = defaultdict(list)
        for e in self.events:
            if e.causation_id:
                self.kids[e.causation_id].append(e)

    @property
    def root(self) -> Event:
        return self.events[0]

    def of(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]

    def children(self, ev: Event | str, types: str | Iterable[str] | None = None) -> list[Event]:
        wanted = {types} if isinstance(types, str) else (set(types) if types is not None else None)
        kid_list = self.kids.get(ev if isinstance(ev, str) else ev.id, [])
        return [k for k in kid_list if wanted is None or k.type in wanted]

    def parent(self, ev: Event) -> Event | None:
        return self.by_id.get(ev.causation_id or "")


async def aload_run(db: Path, run_id: str, blobs: Iterable[str] = ()) -> RunLog:
    """Read a run (and the named blobs) from a SQLite store (inside an event loop)."""
    store = await SqliteStore.open(str(db), create=False)
    try:
        events = await store.read(run_id)
        got = {d: await store.get_blob(d) for d in blobs}
        return RunLog(events, got)
    finally:
        await store.aclose()


def load_run(db: Path, run_id: str, blobs: Iterable[str] = ()) -> RunLog:
    """Read a run (and the named blobs) from a SQLite store."""
    return anyio.run(aload_run, db, run_id, tuple(blobs))


def lm_calls_of(log: RunLog, session: Event) -> int:
    """How many ``language_model`` calls a session made: its ``lm.requested`` grouped by call
    (one call with several distinct messages records one request per group, keyed ``call/i``)."""
    return len({e.key.rsplit("/", 1)[0] for e in log.children(session, "lm.requested")})
