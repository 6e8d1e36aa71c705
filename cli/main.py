"""``stop``: the command line. Each area registers its own subcommands.

This is the one place where errors become exit codes (see :mod:`outcome`): a
:class:`outcome.StopError` is printed as one line plus a hint and exits with its code; anything
else is a bug and keeps its traceback. SIGINT, SIGTERM and SIGHUP all stop a run the same way
(its agents are cancelled, its sandbox workers killed, the log keeps what was recorded) and exit
130, 143 and 129. The heavy imports happen inside :func:`main`, so an interrupt during start-up
is handled too.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any

from outcome import ExitCode, StopError

__all__ = ("EPILOG", "build_parser", "main")

DESCRIPTION = """\
STOP: a self-taught optimizer. A seed improver asks a language model for better versions of a
program and keeps the best by utility; run on its own source and scored by a meta-utility, it
improves itself over generations. Every fact is an event in one append-only log, so any run can
be replayed offline, audited and resumed. Untrusted code only ever runs in the sandbox.

With no endpoint configured the built-in offline model is used (seeded program mutation,
labelled "offline, no language model"); set OPENAI_API_KEY / OPENAI_BASE_URL or --model to use
an OpenAI-compatible server.
"""

EPILOG = """\
exit codes (every command):
  0    it did what was asked
  1    it ran but failed: the improvement or every generation failed, the LM was unusable,
       a spend cap was reached, a replay diverged, an audit found tampering
  2    usage or configuration error; nothing was run
  3    this machine cannot run it: no sandbox, store unwritable, disk full
  129  interrupted by SIGHUP   \\
  130  interrupted by SIGINT    > the log keeps everything recorded: `stop resume RUN`
  143  interrupted by SIGTERM  /

--json of the run commands always has "status" (finished, failed, interrupted,
budget_exhausted) and "errors" (a list of {kind, message, event_id}).
"""

#: Options of the ``stop`` command itself, accepted before or after the subcommand.
_GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--log-format",),
        {
            "choices": ("auto", "json", "pretty"),
            "help": "log rendering on stderr (auto: pretty in a terminal, JSON lines otherwise)",
        },
    ),
    (("-v", "--verbose"), {"action": "count", "help": "more log detail (repeatable)"}),
)
_GLOBAL_DEFAULTS = {"log_format": "auto", "verbose": 0}

_SIGNAL_EXIT = {signal.SIGINT: ExitCode.INTERRUPTED, signal.SIGTERM: ExitCode.TERMINATED}
if hasattr(signal, "SIGHUP"):
    _SIGNAL_EXIT[signal.SIGHUP] = ExitCode.HANGUP


class _Signals:
    """SIGINT, SIGTERM and SIGHUP all take SIGINT's graceful path; the first one's number decides
    the exit code.

    During start-up (imports, parsing) a signal is only recorded: an exception raised in the
    middle of an import can land in a callback that swallows it. :meth:`go_live` then raises it
    at a safe point, or hands SIGINT back to Python's handler, which the asyncio runner replaces
    with its own (it cancels the run's task tree, then raises ``KeyboardInterrupt``); SIGTERM and
    SIGHUP are forwarded to whatever handles SIGINT at that moment."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        self._previous = {signum: signal.getsignal(signum) for signum in _SIGNAL_EXIT}
        for signum in _SIGNAL_EXIT:
            signal.signal(signum, self._record)

    def go_live(self) -> None:
        """Start-up is over: deliver a signal that came during it, and handle the next at once."""
        if self.received is not None:
            raise KeyboardInterrupt
        # Also when started with SIGINT ignored (``cmd &`` in a script): it carries the others.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in _SIGNAL_EXIT:
            if signum != signal.SIGINT:
                signal.signal(signum, self._forward)

    def restore(self) -> None:
        """Put back the handlers found (``main`` is also called in-process, by tests)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            signal.default_int_handler(signal.SIGINT, frame)

    def exit_code(self) -> int:
        return int(_SIGNAL_EXIT.get(signal.Signals(self.received or signal.SIGINT), ExitCode.INTERRUPTED))


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from _subparsers(child)


def build_parser() -> argparse.ArgumentParser:
    from cli import (
        estimate_cmd,
        inspect_cmd,
        lm_cmd,
        repair_cmd,
        replay_cmd,
        run_cmd,
        sandbox_cmd,
        serve_cmd,
        store_cmd,
        tasks_cmd,
        watch_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="stop", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flags, kwargs in _GLOBAL_OPTIONS:
        parser.add_argument(*flags, **kwargs)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Subcommands add subparsers with ``register(subparsers)``, in help order.
    for module in (
        run_cmd,
        repair_cmd,
        replay_cmd,
        inspect_cmd,
        tasks_cmd,
        sandbox_cmd,
        lm_cmd,
        estimate_cmd,
        store_cmd,
        watch_cmd,
        serve_cmd,
    ):
        module.register(sub)
    for child in _subparsers(parser):
        for flags, kwargs in _GLOBAL_OPTIONS:
            # SUPPRESS: given after the subcommand it is set, otherwise the top level's value stays.
            child.add_argument(*flags, **kwargs, default=argparse.SUPPRESS)
    return parser


def _stop_errors(exc: BaseException) -> list[StopError] | None:
    """The user-fixable errors ``exc`` consists of (a task group may wrap them), or None if any part
    of it is something else (a bug, which keeps its traceback)."""
    if isinstance(exc, StopError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found: list[StopError] = []
        for inner in exc.exceptions:
            part = _stop_errors(inner)
            if part is None:
                return None
            found.extend(part)
        return found or None
    return None


def _interrupt_in(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    return isinstance(exc, BaseExceptionGroup) and any(_interrupt_in(e) for e in exc.exceptions)


def _interrupted(signals: _Signals) -> int:
    print("stop: interrupted; the log keeps everything recorded so far (stop resume RUN)", file=sys.stderr)
    return signals.exit_code()


def main(argv: Sequence[str] | None = None) -> int:
    signals = _Signals()
    signals.install()
    try:
        return _main(argv, signals)
    except KeyboardInterrupt:
        return _interrupted(signals)
    except BaseException as exc:
        errors = _stop_errors(exc)
        if errors is None:
            if _interrupt_in(exc):
                return _interrupted(signals)
            raise
        for text in dict.fromkeys(err.render() for err in errors):  # e.g. every worker failed alike
            print(text, file=sys.stderr)
        return int(max(err.exit_code for err in errors))
    finally:
        signals.restore()


def _main(argv: Sequence[str] | None, signals: _Signals) -> int:
    from cli.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in _GLOBAL_DEFAULTS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, default)
    configure_logging(args.log_format, args.verbose)
    signals.go_live()
    args.interrupt_exit_code = signals.exit_code  # a command that stops on a signal exits with its number
    handler = getattr(args, "handler", None) or getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
