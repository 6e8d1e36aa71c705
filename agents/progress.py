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

from events.model import Event
from store.base import EventStore

__all__ = ("RunProgress", "expected_counts", "follow_progress", "report_progress")

#: The events that end a run, and the outcome status each stands for.
END_TYPES = {"run.finished": "finished", "run.failed": "failed"}


def expected_counts(command: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, int]:
    """Sessions and generations the config's budgets imply (sessions: not counting candidates an
    improver scores inside its own session, which its utility budget bounds but does not fix)."""
    mu = config.get("meta_utility") if isinstance(config.get("meta_utility"), Mapping) else {}
    assert isinstance(mu, Mapping)
    tasks = mu.get("tasks") or ["parity_noise"]
    runs = int(mu.get("runs") or 5)
    per_meta = len(tasks) * runs
    if command == "self-improve":
        gens = int(config.get("generations") or 3)
        # the seed's meta-utility, then per generation: its session and its candidate's meta-utility
        return {"generations": gens, "sessions": per_meta + gens * (1 + per_meta)}
    if command == "improve":
        return {"sessions": 1}
    if command == "transfer":
        return {"sessions": 2 * len(options.get("tasks") or []) * int(options.get("runs") or 1)}
    return {}


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
    _prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    _gen_done_at: list[float] = field(default_factory=list)

    def add(self, ev: Event) -> RunProgress:
        self.events += 1
        at = _when(ev)
        if at is None and not self.ended:
            at = time.time()  # events carry no time: when this fold saw it
        if at is not None:
            self.started_at = at if self.started_at is None else self.started_at
            self.last_event_at = at
        p, t = ev.payload, ev.type
        if t == "run.started":
            self._start(ev)
        elif t == "generation.started":
            self.generation = int(p.get("generation", 0))
        elif t == "session.requested":
            self.sessions_requested += 1
        elif t == "session.completed":
            self.sessions_done += 1
            if p.get("status") not in ("ok", "finished", "success"):
                self.sessions_failed += 1
                self._error("session." + str(p.get("status")), str(p.get("error") or ""), ev)
            self.violations += [str(v) for v in p.get("violations") or []]
        elif t == "sandbox.batch.requested":
            self.batches_requested += 1
        elif t == "sandbox.batch.completed":
            self.batches_done += 1
            self.violations += [str(v) for v in p.get("violations") or []]
        elif t == "lm.requested":
            self.lm_calls += 1
        elif t == "lm.responded":
            self._usage(ev)
        elif t == "lm.failed":
            self.lm_failed += 1
            self._error("lm." + str(p.get("kind") or "failed"), str(p.get("error") or ""), ev)
        elif t in ("budget.exceeded", "budget.exhausted"):
            self.refused += 1
            if t == "budget.exhausted":
                self.status = "budget_exhausted"
                self._error(t, str(p.get("message") or p.get("cap") or ""), ev)
        elif t == "budget.raised":
            names = {"max_cost_usd": "cost_usd", "max_tokens_total": "tokens", "max_lm_calls": "calls"}
            for key, value in (p.get("caps") or {}).items():
                if key in names and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.caps[names[key]] = float(value)
            if self.status == "budget_exhausted":
                self.status = "running"
        elif t == "improver.decided":
            self.decisions.append(
                {
                    "generation": p.get("generation"),
                    "candidate": p.get("candidate"),
                    "adopted": bool(p.get("adopted")),
                    "reason": str(p.get("reason") or ""),
                    "meta_val": p.get("meta_val"),
                }
            )
            if at is not None:
                self._gen_done_at.append(at)
        elif t in END_TYPES:
            if self.status != "budget_exhausted" or t == "run.finished":
                self.status = END_TYPES[t]
            if t == "run.failed":
                self._error("run.failed", str(p.get("error") or ""), ev)
        return self

    def _start(self, ev: Event) -> None:
        p = ev.payload
        self.run_id, self.command = ev.run_id, str(p.get("command") or "")
        config = p.get("config") if isinstance(p.get("config"), Mapping) else {}
        assert isinstance(config, Mapping)
        lm = config.get("lm") if isinstance(config.get("lm"), Mapping) else {}
        assert isinstance(lm, Mapping)
        self.model = str(lm.get("model") or "offline")
        self.expected = expected_counts(self.command, config, config.get("options") or {})
        from replay.costs import prices_from_config

        self._prices = prices_from_config(config)
        budget = lm.get("budget") if isinstance(lm.get("budget"), Mapping) else {}
        assert isinstance(budget, Mapping)
        names = {"max_cost_usd": "cost_usd", "max_tokens_total": "tokens", "max_lm_calls": "calls"}
        for key, name in names.items():
            value = config.get(key, budget.get(key, lm.get(key)))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.caps[name] = float(value)

    def _usage(self, ev: Event) -> None:
        model = "?"
        prompt = completion = 0
        for c in ev.payload.get("completions") or []:
            if isinstance(c, Mapping):
                prompt += _int(c.get("prompt_tokens"))
                completion += _int(c.get("completion_tokens"))
                model = str(c.get("model") or model)
        self.tokens += prompt + completion
        price = self._prices.get(model) or (next(iter(self._prices.values())) if len(self._prices) == 1 else None)
        if ev.payload.get("source", "live") == "live" and price is not None:
            self.cost_usd += (prompt * price[0] + completion * price[1]) / 1000

    def _error(self, kind: str, message: str, ev: Event) -> None:
        self.errors.append({"kind": kind, "message": message[:300], "event_id": ev.id})

    # ---- derived figures ---------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.status != "running"

    def elapsed_s(self, now: float | None = None) -> float:
        if self.started_at is None:
            return 0.0
        end = self.last_event_at if self.ended else (now if now is not None else time.time())
        return max(0.0, (end or self.started_at) - self.started_at)

    def fraction(self) -> float | None:
        """Work done, 0..1, from the expected session count (or generations)."""
        gens = self.expected.get("generations")
        if gens:
            return min(1.0, len(self.decisions) / gens)
        want = self.expected.get("sessions")
        if want:
            return min(1.0, self.sessions_done / max(want, self.sessions_requested))
        return None

    def eta_s(self, now: float | None = None) -> float | None:
        f = self.fraction()
        if self.ended or not f:
            return None
        return self.elapsed_s(now) * (1 - f) / f

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "command": self.command,
            "model": self.model,
            "status": self.status,
            "generation": self.generation,
            "generations": self.expected.get("generations"),
            "sessions": {
                "done": self.sessions_done,
                "requested": self.sessions_requested,
                "expected": self.expected.get("sessions"),
                "failed": self.sessions_failed,
            },
            "batches": {"done": self.batches_done, "requested": self.batches_requested},
            "lm": {
                "calls": self.lm_calls,
                "failed": self.lm_failed,
                "tokens": self.tokens,
                "cost_usd": round(self.cost_usd, 6),
                "refused": self.refused,
            },
            "caps": self.caps,
            "elapsed_s": round(self.elapsed_s(now), 1),
            "eta_s": None if (e := self.eta_s(now)) is None else round(e, 1),
            "violations": len(self.violations),
            "errors": self.errors[-5:],
            "decisions": self.decisions[-5:],
        }

    def line(self, now: float | None = None) -> str:
        """One plain line (no control codes)."""
        parts = []
        if self.expected.get("generations"):
            parts.append(f"gen {0 if self.generation is None else self.generation + 1}/{self.expected['generations']}")
        want = self.expected.get("sessions")
        more = f" of >={want}" if want else ""
        parts.append(f"sessions {self.sessions_done}/{self.sessions_requested}{more}")
        parts.append(f"batches {self.batches_done}/{self.batches_requested}")
        cap = self.caps.get("cost_usd")
        tcap, ccap = self.caps.get("tokens"), self.caps.get("calls")
        parts.append(
            f"lm {self.lm_calls}{f'/{ccap:g}' if ccap else ''} calls {self.tokens}{f'/{tcap:g}' if tcap else ''} tok "
            f"${self.cost_usd:.4f}" + (f"/{cap:g}" if cap else "")
        )
        failures = self.sessions_failed + self.lm_failed
        parts.append(f"failures {failures}")
        parts.append(f"elapsed {_dur(self.elapsed_s(now))}")
        eta = self.eta_s(now)
        if eta is not None:
            parts.append(f"left ~{_dur(eta)}")
        if self.ended:
            parts.append(f"[{self.status}]")
        return "stop: " + ", ".join(parts)

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


def _when(ev: Event) -> float | None:
    value = getattr(ev, "recorded_at", None) or getattr(ev, "at", None) or getattr(ev, "timestamp", None)
    return float(value) if isinstance(value, (int, float)) else None


def _dur(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


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

    A terminal gets a live ``rich`` panel; anything else plain lines, each printed when the
    line changed and at most every ``5 * every_s`` seconds (and always the last one)."""
    out = stream or sys.stderr
    prog = RunProgress()
    tty = out.isatty()
    live: Any = None
    if tty:
        from rich.console import Console
        from rich.live import Live

        live = Live(console=Console(file=out), refresh_per_second=4, transient=False)
        live.start()
    last_text, last_print = "", 0.0

    def render(force: bool = False) -> None:
        nonlocal last_text, last_print
        text = prog.line(time.time())
        if details:
            text = "\n".join([text, *("  " + d for d in prog.details())])
        now = anyio.current_time()
        if live is not None:
            from rich.text import Text

            live.update(Text(text))
            return
        if force or (text != last_text and now - last_print >= 5 * every_s):
            print(text, file=out, flush=True)
            last_text, last_print = text, now

    try:
        async for ev in store.subscribe(run_id):
            prog.add(ev)
            render()
            if stop_at_end and prog.ended:
                break
    finally:
        render(force=True)
        if live is not None:
            live.stop()
    return prog


async def report_progress(
    store: EventStore, run_id: str, *, stream: TextIO | None = None, every_s: float = 1.0
) -> None:
    """The run commands' progress view (until cancelled)."""
    await follow_progress(store, run_id, stream=stream, every_s=every_s)
