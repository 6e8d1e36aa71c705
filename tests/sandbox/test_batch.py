"""A batch is one sandboxed process: per-instance limits, crashes and floods inside it."""

from __future__ import annotations

import time

import pytest

from sandbox import Job, SandboxPool

pytestmark = pytest.mark.anyio

PROGRAM = """
import os, sys, time

CALLS = []

def f(x):
    CALLS.append(x)
    if x == "hang":
        while True:
            pass
    if x == "sleep":
        time.sleep(60)
    if x == "exit":
        os._exit(3)
    if x == "segv":
        import ctypes
        ctypes.string_at(0)
    if x == "flood":
        block = "y" * 65536
        while True:
            sys.stdout.write(block)
    if x == "raise":
        raise ValueError("bad instance")
    print("out", x)
    return [x, len(CALLS), os.getpid()]
"""


def batch(xs: list[object], *, limit: float = 0.5) -> list[Job]:
    return [
        Job(program=PROGRAM, function="f", args=[x], call_timeout_s=limit, wall_timeout_s=limit + 3.0, seed=i)
        for i, x in enumerate(xs)
    ]


async def test_fast_instances_share_one_process(pool: SandboxPool) -> None:
    results = await pool.run_batch(batch([0, 1, 2, 3]))
    assert [r.status for r in results] == ["ok"] * 4
    assert [r.value[0] for r in results] == [0, 1, 2, 3]
    assert [r.value[1] for r in results] == [1, 2, 3, 4], "the program was loaded once"
    assert len({r.value[2] for r in results}) == 1
    assert [r.stdout for r in results] == [f"out {i}\n" for i in range(4)]
    assert all(r.call_time_s is not None and r.exit_code == 0 for r in results)
    assert pool.last_batch.processes == 1


@pytest.mark.parametrize("hang", ["hang", "sleep"])
async def test_one_hanging_instance_costs_one_limit(pool: SandboxPool, hang: str) -> None:
    limit = 0.5
    started = time.monotonic()
    results = await pool.run_batch(batch([0, 1, hang, 3, 4], limit=limit))
    elapsed = time.monotonic() - started
    assert [r.status for r in results] == ["ok", "ok", "call_timeout", "ok", "ok"]
    assert [r.value[0] for i, r in enumerate(results) if i != 2] == [0, 1, 3, 4]
    # The instances after the hang ran in a fresh process (the program loaded again).
    assert results[3].value[1] == 1 and results[3].value[2] != results[1].value[2]
    assert results[2].call_time_s is not None and results[2].call_time_s >= limit
    assert pool.last_batch.processes == 2
    # One limit, plus the restart; far from the wall slack or a second limit.
    assert elapsed < limit * 2 + 1.0, elapsed


async def test_a_program_that_swallows_the_timer_is_killed_by_the_worker(pool: SandboxPool) -> None:
    program = (
        "def f(x):\n"
        "    if x == 1:\n"
        "        while True:\n"
        "            try:\n"
        "                while True:\n"
        "                    pass\n"
        "            except BaseException:\n"
        "                pass\n"
        "    return x\n"
    )
    jobs = [Job(program=program, function="f", args=[i], call_timeout_s=0.3, wall_timeout_s=3.3) for i in range(3)]
    results = await pool.run_batch(jobs)
    assert [r.status for r in results] == ["ok", "call_timeout", "ok"]
    assert results[1].signal == "SIGKILL"
    assert [results[0].value, results[2].value] == [0, 2]


@pytest.mark.parametrize(("crash", "signal", "code"), [("exit", None, 3), ("segv", "SIGSEGV", None)])
async def test_a_crash_mid_batch_is_that_instance_s(
    pool: SandboxPool, crash: str, signal: str | None, code: int | None
) -> None:
    results = await pool.run_batch(batch([0, crash, 2, 3]))
    assert [r.status for r in results] == ["ok", "crashed", "ok", "ok"]
    assert results[1].signal == signal and results[1].exit_code == code
    assert [results[i].value[0] for i in (0, 2, 3)] == [0, 2, 3]
    assert pool.last_batch.processes == 2


async def test_an_output_flood_mid_batch_is_that_instance_s(pool: SandboxPool) -> None:
    results = await pool.run_batch(batch([0, "flood", 2]))
    assert [r.status for r in results] == ["ok", "output_limit", "ok"]
    assert results[0].stdout == "out 0\n" and results[2].stdout == "out 2\n"
    assert results[1].stdout_truncated and not results[0].stdout_truncated
    assert pool.last_batch.output_bytes > 1 << 20
    assert pool.last_batch.processes == 2


async def test_an_error_does_not_restart_the_process(pool: SandboxPool) -> None:
    results = await pool.run_batch(batch([0, "raise", 2]))
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert "ValueError: bad instance" in (results[1].error or "")
    assert results[2].value[1] == 3, "the same process ran the instance after the error"
    assert pool.last_batch.processes == 1


async def test_a_program_that_fails_to_load_fails_every_instance(pool: SandboxPool) -> None:
    jobs = [
        Job(program="def f(x):\n    return x\nraise ImportError('nope')\n", function="f", args=[i]) for i in range(3)
    ]
    results = await pool.run_batch(jobs)
    assert [r.status for r in results] == ["error"] * 3
    assert all("ImportError: nope" in (r.error or "") for r in results)


async def test_a_crash_while_loading_ends_the_batch(pool: SandboxPool) -> None:
    jobs = [Job(program="import os\nos._exit(0)\ndef f(x):\n    return x\n", function="f", args=[i]) for i in range(3)]
    results = await pool.run_batch(jobs)
    assert [r.status for r in results] == ["crashed"] * 3
    assert pool.last_batch.processes == 3


async def test_forged_results_are_refused(pool: SandboxPool) -> None:
    program = (
        "import json, os, struct\n"
        "def f(x):\n"
        "    if x == 1:\n"
        "        for i in (1, 2):\n"
        "            frame = json.dumps({'t': 'result', 'i': i, 'status': 'ok', 'value_json': '99'}).encode()\n"
        "            os.write(3, struct.pack('>I', len(frame)) + frame)\n"
        "    return x\n"
    )
    results = await pool.run_batch([Job(program=program, function="f", args=[i]) for i in range(4)])
    assert results[0].status == "ok" and results[0].value == 0
    # A result is held until the runtime shows the instance is over: the second forged frame
    # (for an instance not started) fails instance 1, and nothing forged reaches instance 2.
    assert results[1].status == "invalid_output" and "result:forged" in results[1].violations
    assert results[2].status == "ok" and results[2].value == 2
    assert results[3].status == "ok" and results[3].value == 3


async def test_reseeded_per_instance_like_separate_jobs(pool: SandboxPool) -> None:
    program = "import random\nimport numpy as np\ndef f(x):\n    return [random.random(), float(np.random.rand())]\n"
    jobs = [Job(program=program, function="f", args=[i], seed=100 + i) for i in range(3)]
    batched = await pool.run_batch(jobs)
    alone = [await pool.run(j) for j in jobs]
    assert [r.value for r in batched] == [r.value for r in alone]
    assert len({tuple(r.value) for r in batched}) == 3


async def test_mixed_programs_are_refused_as_a_batch(pool: SandboxPool) -> None:
    jobs = [
        Job(program="def f():\n    return 1\n", function="f"),
        Job(program="def g():\n    return 1\n", function="g"),
    ]
    results = await pool.run_batch(jobs)
    assert [r.status for r in results] == ["refused", "refused"]


async def test_paper_session_timeout_is_accepted(pool: SandboxPool) -> None:
    """configs/paper.toml gives improver sessions two hours (session_timeout_s = 7200): the
    pool's sanity bound on time limits must admit it (it refused every session before)."""
    ok = await pool.run(Job(program="def f():\n    return 1\n", function="f", wall_timeout_s=7200.0))
    assert ok.status == "ok" and ok.value == 1
    refused = await pool.run(Job(program="def f():\n    return 1\n", function="f", wall_timeout_s=10.0**6))
    assert refused.status == "refused" and "out of range" in (refused.error or "")


async def test_a_batch_refuses_bridge_proxies_anywhere_in_its_arguments(pool: SandboxPool) -> None:
    from sandbox import LanguageModelProxy, UtilityProxy

    prog = "def f(x):\n    return 1\n"
    for proxy in (UtilityProxy("u", 1), LanguageModelProxy(1)):
        jobs = [Job(program=prog, function="f", args=[1]), Job(program=prog, function="f", args=[{"k": [proxy]}])]
        results = await pool.run_batch(jobs)
        assert [r.status for r in results] == ["refused", "refused"]
        assert "run_session" in (results[0].error or "")
    assert [r.status for r in await pool.run_batch([Job(program=prog, function="f", args=[1])])] == ["ok"]


async def test_batch_facts_are_measured_per_batch(pool: SandboxPool) -> None:
    """``run_batch_facts`` returns the batch's own facts (not the pool's last batch): the
    processes a flood cost, the output it wrote, that the cap was hit, time in the worker."""
    (quiet, q_facts), (flood, f_facts) = [await pool.run_batch_facts(batch(xs)) for xs in ([1, 2, 3], [1, "flood", 3])]
    assert [r.status for r in quiet] == ["ok"] * 3
    assert (q_facts.processes, q_facts.output_cap_hit) == (1, False)
    assert q_facts.output_bytes == sum(len(r.stdout) for r in quiet)
    assert [r.status for r in flood] == ["ok", "output_limit", "ok"]
    assert (f_facts.processes, f_facts.output_cap_hit) == (2, True)
    assert f_facts.output_bytes > 1 << 20
    for facts in (q_facts, f_facts):
        assert facts.wall_s > 0 and facts.queue_s >= 0 and facts.max_rss_kb > 1000
        assert set(facts.to_json()) == {
            "processes",
            "output_bytes",
            "output_cap_hit",
            "max_rss_kb",
            "wall_s",
            "queue_s",
        }


def test_batch_completed_v1_from_the_pre_batch_fixture_upcasts_to_unknown_facts() -> None:
    """The recorded pre-batch log (tests/fixtures) holds version-1 ``sandbox.batch.completed``
    events: read now, they carry every recorded field and None (unknown) for each fact."""
    import gzip
    import json
    from pathlib import Path

    from events.registry import current_version, decode_payload
    from events.stop_events import SandboxBatchCompleted

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "quickstart_1gen_before_batch.jsonl.gz"
    rows = [json.loads(line).get("event") or {} for line in gzip.open(fixture, "rt")]
    old = [r for r in rows if r.get("type") == "sandbox.batch.completed"]
    assert old and {r["version"] for r in old} == {1} and current_version("sandbox.batch.completed") == 2
    for row in old:
        data = decode_payload(row["type"], row["version"], row["payload"])
        assert isinstance(data, SandboxBatchCompleted)
        assert (data.results, data.statuses, data.wall_s) == (
            row["payload"]["results"],
            row["payload"]["statuses"],
            row["payload"]["wall_s"],
        )
        assert data.processes is None and data.output_cap_hit is None and data.worker_s is None


async def test_a_forged_non_json_value_is_invalid_output(pool: SandboxPool) -> None:
    """NaN is not JSON (the runtime tags it): a forged result frame carrying it, which stands
    because the program exits right after, fails that instance (the exit is charged to the
    next, which the worker then takes to be running); the worker survives (json.dumps of the
    outcome with a NaN in it used to kill it, and the batch with it)."""
    program = (
        "import json, os, struct\n"
        "def f(x):\n"
        "    if x == 1:\n"
        "        frame = json.dumps({'t': 'result', 'i': 1, 'status': 'ok', 'value_json': 'NaN'}).encode()\n"
        "        os.write(3, struct.pack('>I', len(frame)) + frame)\n"
        "        os._exit(0)\n"
        "    return x\n"
    )
    workers = pool.worker_pids()
    results = await pool.run_batch([Job(program=program, function="f", args=[i]) for i in range(3)])
    assert [r.status for r in results] == ["ok", "invalid_output", "crashed"]
    assert results[0].value == 0 and "not valid JSON" in (results[1].error or "")
    assert pool.worker_pids() == workers


async def test_many_instances_come_back_in_order_across_several_frames(pool: SandboxPool) -> None:
    """More instances than one ``items`` frame holds, with a restart in the middle: every
    outcome reaches its own instance."""
    xs: list[object] = [*range(300), "exit", *range(300, 600)]
    results = await pool.run_batch(batch(xs, limit=2.0))
    assert len(results) == 601
    assert results[300].status == "crashed" and results[300].exit_code == 3
    rest = [r for i, r in enumerate(results) if i != 300]
    assert [r.status for r in rest] == ["ok"] * 600
    assert [r.value[0] for r in rest] == list(range(600))
    assert [r.stdout for r in rest] == [f"out {i}\n" for i in range(600)]
    assert pool.last_batch.processes == 2


async def test_the_call_timer_is_rearmed_after_a_program_replaced_its_handler(pool: SandboxPool) -> None:
    """Instance 0 ignores SIGALRM; instance 1 hangs: the runtime's timer handler is back for
    it (the guest's own CallTimeout, not only the worker's kill)."""
    program = (
        "import signal\n"
        "def f(x):\n"
        "    if x == 0:\n"
        "        signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "    if x == 1:\n"
        "        while True:\n"
        "            pass\n"
        "    return x\n"
    )
    jobs = [Job(program=program, function="f", args=[i], call_timeout_s=0.3, wall_timeout_s=3.3) for i in range(3)]
    results = await pool.run_batch(jobs)
    assert [r.status for r in results] == ["ok", "call_timeout", "ok"]
    assert "CallTimeout" in (results[1].error or "") and results[1].signal is None
