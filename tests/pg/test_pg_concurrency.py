"""Several processes appending to one run of one PostgreSQL store at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import anyio
from pgserver import PgServer

from events import verify_chain
from store import PostgresStore

APPENDER = textwrap.dedent(
    """
    import sys, anyio
    from events import make_event
    from events.types import Note, RunStarted
    from store import PostgresStore

    url, who, count, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    async def main():
        s = await PostgresStore.open(url)
        root = make_event("shared", RunStarted("append", 0, {}, {}), cause=None, key=0)
        await s.append([root])  # every process appends the same root: one is stored
        for k in range(0, count, batch):
            evs = [make_event("shared", Note(who, {"k": k + j}), cause=root, key=f"{who}/{k + j}")
                   for j in range(min(batch, count - k))]
            await s.append(evs)
            await s.append(evs[:1])  # a re-append in the middle of the race is a no-op
        await s.aclose()

    anyio.run(main)
    """
)


def test_four_processes_append_to_one_run(pg_server: PgServer) -> None:
    """4 processes x 300 events (single and batched appends) on one run: 1,201 events, the
    sequence gapless, the chain intact, nothing lost or doubled."""
    url = anyio.run(pg_server.fresh_url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, url, f"p{i}", "300", str(1 + 3 * (i % 2))],
            env=pg_server.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=os.getcwd(),
        )
        for i in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err

    async def read() -> list:
        s = await PostgresStore.open(url, create=False)
        try:
            return await s.read()
        finally:
            await s.aclose()

    events = anyio.run(read)
    assert len(events) == 1201
    assert len({e.id for e in events}) == 1201
    assert [e.seq for e in events] == list(range(1, 1202))
    assert verify_chain(events).ok
    for i in range(4):
        mine = [e.payload["data"]["k"] for e in events if e.type == "note" and e.payload["text"] == f"p{i}"]
        assert mine == list(range(300))  # each writer's events in its own order
