"""The checkpoint agent and the audit's checkpoint rule (``replay.checkpoints``), branch by branch,
on small logs in a memory store (the attacks on a real run: tests/reliability)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio
import pytest

from agents.checkpoints import checkpoint_event, record_end_checkpoint, run_checkpointer
from events import Event, make_event
from events.checkpoint_events import CHECKPOINT, CheckpointSigned
from events.signing import Signer, generate_key_file, signer_from_env
from events.types import Note, RunFinished, RunStarted
from outcome import ConfigError
from replay.checkpoints import verify_checkpoints
from store import MemoryStore

pytestmark = pytest.mark.anyio

RUN = "run-1"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return generate_key_file(tmp_path_factory.mktemp("k") / "key")


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return generate_key_file(tmp_path_factory.mktemp("k") / "other")


async def _run(store: MemoryStore, n: int) -> list[Event]:
    """A root and ``n - 1`` notes, appended one at a time."""
    root = make_event(RUN, RunStarted(command="t", seed=0, config={}, host={}), cause=None, key=0)
    await store.append([root])
    for i in range(1, n):
        await store.append([make_event(RUN, Note(text=str(i), data={}), cause=root, key=i)])
    return await store.read(RUN)


async def _finish(store: MemoryStore, signer: Signer) -> list[Event]:
    root = (await store.read(RUN))[0]
    await store.append([make_event(RUN, RunFinished(summary={}), cause=root, key="finished")])
    await record_end_checkpoint(store, signer, RUN, "run.finished")
    return await store.read(RUN)


def _problems(events: list[Event], pinned: str | None = None) -> list[str]:
    return [p.problem for p in verify_checkpoints(RUN, events, pinned).problems]


def _replace(events: list[Event], i: int, **changes: object) -> list[Event]:
    """Event ``i`` with a changed checkpoint payload (the chain is not what the rule checks)."""
    ev = events[i]
    data = dataclasses.replace(ev.decode(CheckpointSigned), **changes)  # type: ignore[arg-type]  # test edits
    out = list(events)
    out[i] = dataclasses.replace(ev, payload=data.to_dict())
    return out


async def _follow(store: MemoryStore, signer: Signer, every: int, until: int) -> None:
    """Run the checkpoint agent until the run holds ``until`` checkpoints (or 5 s pass)."""
    with anyio.move_on_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(run_checkpointer, store, signer, RUN, every)
            seen = 0
            async for _ in store.subscribe(RUN, types={CHECKPOINT}):
                seen += 1
                if seen >= until:
                    break
            await anyio.sleep(0.05)  # nothing more is due: give it the chance to be wrong
            tg.cancel_scope.cancel()


async def test_the_agent_signs_every_nth_event_and_a_restart_records_nothing_new(signer: Signer) -> None:
    store = MemoryStore()
    events = await _run(store, 25)
    await _follow(store, signer, every=10, until=2)
    cps = await store.read(RUN, types={CHECKPOINT})
    assert [(c.decode(CheckpointSigned).count, c.key) for c in cps] == [(10, "checkpoint/10"), (20, "checkpoint/20")]
    assert [c.decode(CheckpointSigned).head for c in cps] == [events[9].hash, events[19].hash]
    before = await store.read(RUN)
    await _follow(store, signer, every=10, until=2)  # a resume follows the run from its start again
    assert await store.read(RUN) == before


async def test_a_checkpoint_is_never_signed_by_the_next_one(signer: Signer) -> None:
    store = MemoryStore()
    await _run(store, 2)
    await _follow(store, signer, every=2, until=1)  # event 3 is that checkpoint: no checkpoint of it
    kinds = [e.type for e in await store.read(RUN)]
    assert kinds == ["run.started", "note", CHECKPOINT]


async def test_checkpoints_are_deterministic(signer: Signer, tmp_path: Path) -> None:
    store = MemoryStore()
    events = await _run(store, 3)
    again = Signer(signer.key)
    a = checkpoint_event(signer, events[0], 3, str(events[2].hash), "run.finished")
    b = checkpoint_event(again, events[0], 3, str(events[2].hash), "run.finished")
    assert a.id == b.id and a.same_content(b)


async def test_an_intact_signed_run_verifies(signer: Signer) -> None:
    store = MemoryStore()
    await _run(store, 12)
    await _follow(store, signer, every=5, until=2)
    events = await _finish(store, signer)
    report = verify_checkpoints(RUN, events, signer.public_key)
    assert report.ok and report.status == "verified" and report.signed == report.verified == 3
    assert report.end == {"event": events[-1].id, "count": len(events) - 1, "end": "run.finished"}
    assert report.fingerprints == [signer.fingerprint] == [report.pinned]
    assert await record_end_checkpoint(store, signer, RUN, "run.finished") == events[-1]  # idempotent


async def test_each_broken_rule_is_named(signer: Signer, other: Signer) -> None:
    store = MemoryStore()
    await _run(store, 12)
    await _follow(store, signer, every=5, until=2)
    events = await _finish(store, signer)
    last = len(events) - 1
    assert _problems(_replace(events, last, count=3))[0] == (
        "the signature does not verify (the checkpoint was edited or forged)"
    )
    assert "is not that of the key" in _problems(_replace(events, last, fingerprint="0" * 16))[0]
    forged = checkpoint_event(signer, events[0], len(events), str(events[-1].hash), "run.finished")
    assert "but is event" in _problems([*events[:-1], forged])[0]  # signs itself: count >= position
    assert "signed head" in _problems([*events[:3], events[4], events[3], *events[5:]])[0]  # reordered
    assert (
        "2 different keys"
        in _problems([*events[:-1], checkpoint_event(other, events[0], last, str(events[-2].hash), "run.finished")])[-1]
    )
    assert all("not by the pinned key" in p for p in _problems(events, other.public_key))
    assert "periodic" in _problems(events[:-3])[0]  # tail cut after a periodic checkpoint
    assert "unsigned (appended later)" in _problems([*events, events[1]])[0]
    short = checkpoint_event(signer, events[0], last - 1, str(events[-3].hash), "run.finished")
    assert "not all" in _problems([*events[:-1], short])[0]


async def test_an_unsigned_run_passes_unless_a_key_is_pinned(signer: Signer) -> None:
    store = MemoryStore()
    events = await _run(store, 5)
    report = verify_checkpoints(RUN, events)
    assert report.ok and report.status == "unsigned" and "unsigned" in report.render_lines()[0]
    assert "no checkpoint signed by the pinned key" in _problems(events, signer.public_key)[0]


def test_the_key_file_is_checked_before_anything_runs(signer: Signer, tmp_path: Path) -> None:
    assert signer_from_env({}) is None
    loaded = signer_from_env({"STOP_SIGNING_KEY": signer.path})
    assert loaded is not None and loaded.public_key == signer.public_key
    with pytest.raises(ConfigError, match="cannot read signing key"):
        signer_from_env({"STOP_SIGNING_KEY": str(tmp_path / "missing")})
    loose = tmp_path / "loose.key"
    loose.write_bytes(Path(signer.path).read_bytes())
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="accessible by other users"):
        signer_from_env({"STOP_SIGNING_KEY": str(loose)})
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    junk.chmod(0o600)
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        signer_from_env({"STOP_SIGNING_KEY": str(junk)})
