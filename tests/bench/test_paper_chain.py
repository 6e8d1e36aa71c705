"""The paper bench's LM-bound critical path: the longest chain of causally dependent round trips.

A synthetic log shaped like one STOP generation: a generation session asks the LM, then calls
the utility twice in sequence; each utility call starts two improver sessions in parallel, each
asking the LM once. The chain is: the generation's call, one session of the first utility call,
one of the second (3 round trips). Sessions side by side do not chain; a session's call does
not depend on a round trip answered after it was asked.
"""

from __future__ import annotations

from bench.paper_run import critical_chain, time_breakdown
from events import Event


def ev(type_: str, cause: Event | None, name: str) -> Event:
    cause_id = cause.id if cause else None
    return Event(id=name, run_id="r", type=type_, version=1, causation_id=cause_id, key=name, payload={})


def _log() -> list[Event]:
    log: list[Event] = []

    def add(type_: str, cause: Event | None, name: str) -> Event:
        e = ev(type_, cause, name)
        log.append(e)
        return e

    root = add("run.started", None, "root")
    gen = add("session.requested", root, "gen")
    req = add("lm.requested", gen, "gen.lm")
    add("lm.responded", req, "gen.lm.ans")
    for u in range(2):
        util = add("utility.requested", gen, f"u{u}")
        sessions = [add("session.requested", util, f"u{u}.s{k}") for k in range(2)]
        asks = [add("lm.requested", s, f"u{u}.s{k}.lm") for k, s in enumerate(sessions)]
        for a in asks:
            add("lm.responded", a, f"{a.id}.ans")
        add("utility.evaluated", util, f"u{u}.done")
    # A request asked before the generation's answer arrived does not follow it.
    early_session = ev("session.requested", root, "side")
    early = ev("lm.requested", early_session, "side.lm")
    log[2:2] = [early_session, early]  # appended before gen.lm.ans (seq order is what counts)
    log.append(ev("lm.responded", early, "side.lm.ans"))
    return _renumber(log)


def _renumber(log: list[Event]) -> list[Event]:
    """Give the events seqs in list order (the order the store appended them)."""
    return [Event(**{**e.__dict__, "seq": i + 1}) for i, e in enumerate(log)]


def test_the_chain_follows_sequential_utility_calls_not_parallel_sessions() -> None:
    chain = critical_chain(_log())
    assert [e.id for e in chain] in (
        ["gen.lm", "u0.s0.lm", "u1.s0.lm"],
        ["gen.lm", "u0.s1.lm", "u1.s0.lm"],
        ["gen.lm", "u0.s0.lm", "u1.s1.lm"],
        ["gen.lm", "u0.s1.lm", "u1.s1.lm"],
    )


def test_a_request_asked_before_an_answer_does_not_chain_after_it() -> None:
    log = _log()
    # Move the second utility call's sessions before the first one's answers: now parallel.
    by_id = {e.id: e for e in log}
    order = [e.id for e in log]
    for name in ("u0.s0.lm.ans", "u0.s1.lm.ans", "u0.done"):
        order.remove(name)
    order[order.index("u1.s1.lm") + 1 : order.index("u1.s1.lm") + 1] = ["u0.s0.lm.ans", "u0.s1.lm.ans", "u0.done"]
    chain = critical_chain(_renumber([by_id[i] for i in order]))
    assert len(chain) == 2 and chain[0].id == "gen.lm"


def test_time_breakdown_splits_the_wall_time() -> None:
    log = _log()
    seen = {e.seq or 0: float(e.seq or 0) for e in log}  # one second per event
    b = time_breakdown(log, seen, critical_chain(log))
    assert b.wall_s == float(len(log))
    assert b.eval == 0.0 and b.lm_only > 0 and b.lm_only + b.other <= b.wall_s
    assert b.chain_lm_s > 0 and b.chain_gap_s > 0
