"""structlog set-up, done once by the command line: JSON lines in runs, pretty in a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ("configure_logging",)


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure_logging(fmt: str = "auto", verbosity: int = 0) -> None:
    """Logs go to stderr (stdout is for results and ``--json``)."""
    level = logging.WARNING - 10 * verbosity
    pretty = sys.stderr.isatty() if fmt == "auto" else fmt == "pretty"
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=True) if pretty else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(max(level, logging.DEBUG)),
        # sys.stderr as it is when a line is logged (not when configured): in-process callers
        # such as tests swap it.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
