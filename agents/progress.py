"""Progress of a run as a projection of its log, and its rendering on a terminal.

:class:`RunProgress` folds one run's events (from a store subscription) into what a person
watching wants: generation k of T, sessions and sandbox batches done against the counts the
config's budgets imply, LM calls / tokens / cost against any caps, failures, the latest
decisions, errors and sandbox violations, elapsed time and an estimate of time left. It reads
only events; ``stop watch`` and the run commands share it.

In a terminal it is drawn with ``rich`` (a live panel); otherwise it prints plain lines with no
control codes, at most every few seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio

from events.lm_events import BudgetExhausted, BudgetRaised
from events.model import Event
from events.stop_events import (
    BudgetExceeded,
    GenerationStarted,
    ImproverDecided,
    LMFailed,
    LMRequested,
    LMResponded,
    RepairProblemStarted,
    RepairProgram,
    SandboxBatchCompleted,
    SandboxBatchRequested,
    SessionCompleted,
    SessionRequested,
)
from events.types import RunFailed, RunFinished, RunStarted
from store.base import EventStore
from store.errors import StoreError

__all__ = ("RunProgress", "expected_counts", "follow_progress", "report_progress")

#: The events that end a run, and the outcome status each stands for.
END_TYPES = {RunFinished.TYPE: "finished", RunFailed.TYPE: "failed"}
#: A spend cap's config key and the name the view shows it under.
_CAP_NAMES = {"max_cost_usd": "cost_usd", "max_tokens_total": "tokens", "max_lm_calls": "calls"}


def expected_counts(command: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, int]:
    """What the config's budgets imply: generations (exact) and upper bounds on improver sessions
    and LM calls (the same bounds as ``stop estimate``: a session may stop early, and an improver
    need not spend its whole meta-utility budget); for ``repair``, problems (exact) and programs
    (at most ``n_p`` samples plus ``n_p * n_fr`` repairs per problem)."""
    mu = config.get("meta_utility") if isinstance(config.get("meta_utility"), Mapping) else {}
    assert isinstance(mu, Mapping)
    imp = mu.get("improver") if isinstance(mu.get("improver"), Mapping) else {}
    assert isinstance(imp, Mapping)
    per_meta = len(mu.get("tasks") or ["parity_noise"]) * int(mu.get("runs") or 5)
    lm_calls = int(imp.get("lm_calls") or 4)
    out: dict[str, int] = {}
    if command == "self-improve":
        gens = int(config.get("generations") or 3)
        budget = int(mu.get("meta_utility_budget") or 25)
        # per generation: the current improver scored, its session, up to meta_utility_budget
        # meta-utility calls inside it and the candidate scored (stop estimate's bound)
        out = {"generations": gens, "sessions": gens * (1 + (budget + 2) * per_meta)}
    elif command == "improve":
        out = {"sessions": 1}
    elif command == "transfer":
        out = {"sessions": 2 * len(options.get("tasks") or []) * int(options.get("runs") or 1)}
    elif command == "repair":
        problems = len(options.get("problems") or []) or 0
        n_p, n_fr = int(options.get("n_p") or 5), int(options.get("n_fr") or 3)
        if problems:
            out = {"problems": problems, "programs": problems * (n_p + n_p * n_fr)}
    if "sessions" in out:
        out["lm_calls"] = out["sessions"] * lm_calls
    return out


@dataclass
class RunProgress:
    """The fold. ``add`` one event at a time, in log order."""

    run_id: str = ""
    command: str = ""
    model: str = ""
    expected: dict[str, int] = field(default_factory=dict)
    caps: dict[str, float] = field(default_factory=dict)
    generation: int | None = None
    sessions_requested: int = 0
    sessions_done: int = 0
    sessions_failed: int = 0
    batches_requested: int = 0
    batches_done: int = 0
    lm_requested: int = 0
    #: LM requests answered (a reply or a failure): what a call cap counts.
    lm_calls: int = 0
    lm_failed: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    refused: int = 0
    violations: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    status: str = "running"
    started_at: float | None = None
    last_event_at: float | None = None
    events: int = 0
    problems_started: int = 0
    programs: int = 0
    #: Set by :meth:`go_live`: the wall time the fold caught up with the log, its fraction done
    #: then, and whether the run had already been under way (events carry no wall time, so the
    #: run's own start is unknown then: the view shows time watched, and the rate since).
    live_at: float | None = None
    live_fraction: float = 0.0
    joined_late: bool = False
    ended_before_watch: bool = False
    _prices: dict[str, tuple[float, float]] = field(default_factory=dict)

    def add(self, ev: Event, at: float | None = None) -> RunProgress:
        """Fold ``ev``; ``at`` is the wall time it was seen appended (None for a backlog read
        after the fact: events carry no wall time of their own)."""
        self.events += 1
        if at is not None and not self.ended:
            self.started_at = at if self.started_at is None else self.started_at
            self.last_event_at = at
        self._fold(ev)
        return self

    def _fold(self, ev: Event) -> None:
        """One event's effect on the figures, read typed. An event whose payload does not decode
        (a damaged or newer log) is counted but adds no detail: a view never stops on one."""
        if ev.is_a(RunStarted):
            if (started := ev.try_decode(RunStarted)) is not None:
                self._start(ev.run_id, started)
        elif ev.is_a(RepairProblemStarted):
            self.problems_started += 1
        elif ev.is_a(RepairProgram):
            self.programs += 1
        elif (generation := ev.try_decode(GenerationStarted)) is not None:
            self.generation = generation.generation
        elif ev.is_a(SessionRequested):
            self.sessions_requested += 1
        elif ev.is_a(SessionCompleted):
            self.sessions_done += 1
            if (session := ev.try_decode(SessionCompleted)) is not None:
                if session.status not in ("ok", "finished", "success"):
                    self.sessions_failed += 1
                    self._error(f"session.{session.status}", session.error, ev)
                self.violations += [str(v) for v in session.violations]
        elif ev.is_a(SandboxBatchRequested):
            self.batches_requested += 1
        elif ev.is_a(SandboxBatchCompleted):
            self.batches_done += 1
            if (batch := ev.try_decode(SandboxBatchCompleted)) is not None:
                self.violations += [str(v) for v in batch.violations]
        elif ev.is_a(LMRequested):
            self.lm_requested += 1
        elif ev.is_a(LMResponded):
            self.lm_calls += 1
            if (answer := ev.try_decode(LMResponded)) is not None:
                self._usage(answer)
        elif ev.is_a(LMFailed):
            self.lm_calls += 1
            self.lm_failed += 1
            failed = ev.try_decode(LMFailed)
            self._error(f"lm.{(failed.kind if failed else '') or 'failed'}", failed.error if failed else "", ev)
        elif ev.is_a(BudgetExceeded):
            self.refused += 1
        elif ev.is_a(BudgetExhausted):
            self.refused += 1
            self.status = "budget_exhausted"
            exhausted = ev.try_decode(BudgetExhausted)
            self._error(BudgetExhausted.TYPE, (exhausted.message or exhausted.cap) if exhausted else "", ev)
        elif (raised := ev.try_decode(BudgetRaised)) is not None:
            for key, value in raised.caps.items():
                if key in _CAP_NAMES and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.caps[_CAP_NAMES[key]] = float(value)
            if self.status == "budget_exhausted":
                self.status = "running"
        elif (decided := ev.try_decode(ImproverDecided)) is not None:
            self.decisions.append(
                {
                    "generation": decided.generation,
                    "candidate": decided.candidate,
                    "adopted": decided.adopted,
                    "reason": decided.reason,
                    "meta_val": decided.meta_val,
                }
            )
        elif ev.type in END_TYPES:
            if self.status != "budget_exhausted" or ev.is_a(RunFinished):
                self.status = END_TYPES[ev.type]
            if (run_failed := ev.try_decode(RunFailed)) is not None:
                self._error(RunFailed.TYPE, run_failed.error, ev)

    def _start(self, run_id: str, started: RunStarted) -> None:
        self.run_id, self.command = run_id, started.command
        config: Mapping[str, Any] = started.config
        lm = config.get("lm") if isinstance(config.get("lm"), Mapping) else {}
        assert isinstance(lm, Mapping)
        self.model = str(lm.get("model") or "offline")
        self.expected = expected_counts(self.command, config, config.get("options") or {})
        from replay.costs import prices_from_config

        self._prices = prices_from_config(config)
        budget = lm.get("budget") if isinstance(lm.get("budget"), Mapping) else {}
        assert isinstance(budget, Mapping)
        for key, name in _CAP_NAMES.items():
            value = config.get(key, budget.get(key, lm.get(key)))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.caps[name] = float(value)

    def _usage(self, answer: LMResponded) -> None:
        model = "?"
        prompt = completion = 0
        for c in answer.completions:
            if isinstance(c, Mapping):
                prompt += _int(c.get("prompt_tokens"))
                completion += _int(c.get("completion_tokens"))
                model = str(c.get("model") or model)
        self.tokens += prompt + completion
        price = self._prices.get(model) or (next(iter(self._prices.values())) if len(self._prices) == 1 else None)
        if answer.source == "live" and price is not None:
            self.cost_usd += (prompt * price[0] + completion * price[1]) / 1000

    def _error(self, kind: str, message: str, ev: Event) -> None:
        self.errors.append({"kind": kind, "message": message[:300], "event_id": ev.id})

    # ---- derived figures ---------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.status != "running"

    @property
    def failures(self) -> int:
        return self.sessions_failed + self.lm_failed

    def go_live(self, now: float) -> None:
        """The fold has caught up with the log: from here on events are seen as they come."""
        self.live_at = now
        self.live_fraction = self.fraction() or 0.0
        self.joined_late = self.events > 1 and not self.ended
        self.ended_before_watch = self.ended
        if self.started_at is None:
            self.started_at = self.last_event_at = now

    def elapsed_s(self, now: float | None = None) -> float:
        if self.started_at is None:
            return 0.0
        end = self.last_event_at if self.ended else (now if now is not None else time.time())
        return max(0.0, (end or self.started_at) - self.started_at)

    def fraction(self) -> float | None:
        """Work done, 0..1: generations decided, else problems or sessions against what the
        budgets imply (an upper bound, so it can only under-state progress)."""
        gens = self.expected.get("generations")
        if gens:
            return min(1.0, len(self.decisions) / gens)
        problems = self.expected.get("problems")
        if problems:
            return min(1.0, self.programs / max(1, self.expected.get("programs") or 1))
        want = self.expected.get("sessions")
        if want:
            return min(1.0, self.sessions_done / max(want, self.sessions_requested))
        return None

    def eta_s(self, now: float | None = None) -> float | None:
        """Time left at the rate of progress since the view went live (None: no rate yet)."""
        f = self.fraction()
        if self.ended or f is None or self.live_at is None:
            return None
        now = now if now is not None else time.time()
        gained, spent = f - self.live_fraction, now - self.live_at
        if gained <= 0 or spent <= 0:
            return None
        return spent * (1 - f) / gained

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "command": self.command,
            "model": self.model,
            "status": self.status,
            "generation": None if self.generation is None else self.generation + 1,
            "generations": self.expected.get("generations"),
            "sessions": {
                "done": self.sessions_done,
                "requested": self.sessions_requested,
                "at_most": self.expected.get("sessions"),
                "failed": self.sessions_failed,
            },
            "batches": {"done": self.batches_done, "requested": self.batches_requested},
            "problems": {"started": self.problems_started, "expected": self.expected.get("problems")}
            if self.expected.get("problems")
            else None,
            "lm": {
                "calls": self.lm_calls,
                "requested": self.lm_requested,
                "calls_at_most": self.expected.get("lm_calls"),
                "failed": self.lm_failed,
                "tokens": self.tokens,
                "cost_usd": round(self.cost_usd, 6),
                "refused": self.refused,
            },
            "caps": self.caps,
            "failures": self.failures,
            "elapsed_s": None if self.ended_before_watch else round(self.elapsed_s(now), 1),
            "elapsed_is_watched": self.joined_late,
            "eta_s": None if (e := self.eta_s(now)) is None else round(e, 1),
            "violations": len(self.violations),
            "errors": self.errors[-5:],
            "decisions": self.decisions[-5:],
        }

    def parts(self, now: float | None = None) -> list[str]:
        """The figures of the view, each a short plain phrase."""
        out = []
        gens = self.expected.get("generations")
        if gens:
            out.append(f"gen {0 if self.generation is None else self.generation + 1}/{gens}")
        if self.expected.get("problems"):
            out.append(f"problems {self.problems_started}/{self.expected['problems']}")
            out.append(f"programs {self.programs} (<={self.expected.get('programs')})")
        if self.sessions_requested or self.expected.get("sessions"):
            bound = self.expected.get("sessions")
            out.append(f"sessions {self.sessions_done}/{self.sessions_requested}" + (f" (<={bound})" if bound else ""))
        out.append(f"batches {self.batches_done}/{self.batches_requested}")
        calls = f"lm {self.lm_calls}"
        if self.caps.get("calls") is not None:
            calls += f"/{self.caps['calls']:.0f} calls (cap)"
        elif self.expected.get("lm_calls"):
            calls += f" calls (<={self.expected['lm_calls']})"
        else:
            calls += " calls"
        if self.lm_requested > self.lm_calls:
            calls += f" +{self.lm_requested - self.lm_calls} asked"
        out.append(calls)
        tcap, ccap = self.caps.get("tokens"), self.caps.get("cost_usd")
        out.append(f"{self.tokens}" + (f"/{tcap:.0f} (cap)" if tcap is not None else "") + " tok")
        out.append(f"${self.cost_usd:.4f}" + (f"/{ccap:g} (cap)" if ccap is not None else ""))
        out.append(f"failures {self.failures}")
        if not self.ended_before_watch:  # else the log says nothing of how long it took
            label = "watched" if self.joined_late else "elapsed"
            out.append(f"{label} {_dur(self.elapsed_s(now))}")
        eta = self.eta_s(now)
        if eta is not None:
            out.append(f"left ~{_dur(eta)}")
        if self.ended:
            out.append(f"[{self.status}]")
        return out

    def line(self, now: float | None = None) -> str:
        """One plain line (no control codes)."""
        return "stop: " + ", ".join(self.parts(now))

    def details(self) -> list[str]:
        """Latest decisions, errors and violations (for ``stop watch``)."""
        out = []
        for d in self.decisions[-3:]:
            verdict = "adopted" if d["adopted"] else "rejected"
            out.append(f"gen {d['generation']}: {verdict} {str(d['candidate'] or '-')[:10]} ({d['reason'][:80]})")
        for e in self.errors[-3:]:
            out.append(f"error {e['kind']}: {e['message'][:100]}")
        if self.violations:
            out.append(f"violations {len(self.violations)}: {', '.join(sorted(set(self.violations))[:6])}")
        return out


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _dur(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _panel(prog: RunProgress, details: bool, now: float) -> Any:
    """The terminal view: a header, a bar of work done, the figures, and (watch) the latest news."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    head = Text(f"stop {prog.command or '?'} {prog.run_id} · model {prog.model or '?'} · ", style="bold")
    head.append(prog.status, style={"finished": "green", "running": "cyan"}.get(prog.status, "red"))
    rows: list[Any] = [head]
    f = prog.fraction()
    if f is not None:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=1.0, completed=f, width=40), Text(f"{100 * f:.0f}%"))
        rows.append(bar)
    rows.append(Text(", ".join(prog.parts(now))))
    if details:
        rows += [Text("  " + d, style="dim" if not d.startswith("error") else "red") for d in prog.details()]
    return Group(*rows)


async def follow_progress(
    store: EventStore,
    run_id: str,
    *,
    stream: TextIO | None = None,
    every_s: float = 1.0,
    details: bool = False,
    stop_at_end: bool = False,
) -> RunProgress:
    """Fold the run's events as they come and keep the view on ``stream`` current.

    The log so far is read first (a run already under way shows the time watched, not a guess
    at its start), then followed. A terminal gets a live ``rich`` panel; anything else plain
    lines, each printed when the generation or status changes, else when the line changed and
    at most every ``5 * every_s`` seconds (and always the last one)."""
    out = stream or sys.stderr
    prog = RunProgress()
    live: Any = None
    if out.isatty():
        from rich.console import Console
        from rich.live import Live

        live = Live(console=Console(file=out), refresh_per_second=4, transient=False, auto_refresh=False)
        live.start()
    last_text, last_print = "", -1e9
    last_key: tuple[int | None, str] = (None, "running")

    def render(force: bool = False) -> None:
        nonlocal last_text, last_key, last_print
        now = time.time()
        if live is not None:
            live.update(_panel(prog, details, now), refresh=True)
            return
        text = "\n".join([prog.line(now), *(("  " + d) for d in prog.details())] if details else [prog.line(now)])
        key = (prog.generation, prog.status)
        clock = anyio.current_time()
        if text != last_text and (force or key != last_key or clock - last_print >= 5 * every_s):
            print(text, file=out, flush=True)
            last_text, last_key, last_print = text, key, clock

    async def tick() -> None:
        while True:  # the clock moves between events too (elapsed, time left)
            await anyio.sleep(every_s)
            if live is not None:
                render()

    seq = 0
    try:
        async with anyio.create_task_group() as tg:
            for ev in await store.read(run_id):
                prog.add(ev)
                seq = max(seq, ev.seq or 0)
            prog.go_live(time.time())
            render(force=True)
            tg.start_soon(tick)
            if not (stop_at_end and prog.ended):
                async for ev in store.subscribe(run_id, after=seq):
                    prog.add(ev, time.time())
                    seq = max(seq, ev.seq or 0)
                    render()
                    if stop_at_end and prog.ended:
                        break
            tg.cancel_scope.cancel()
    finally:
        # stopped (the run's command returned): what was appended meanwhile, its end included
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            try:
                for ev in [] if prog.ended else await store.read(run_id, after=seq):
                    prog.add(ev, time.time())
            except (StoreError, OSError):  # a view never hides why the run stopped
                pass
        render(force=True)
        if live is not None:
            live.stop()
    return prog


async def report_progress(
    store: EventStore, run_id: str, *, stream: TextIO | None = None, every_s: float = 1.0
) -> None:
    """The run commands' progress view (until cancelled)."""
    await follow_progress(store, run_id, stream=stream, every_s=every_s)
