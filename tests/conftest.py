"""Shared test configuration: anyio on asyncio; under ``STOP_REQUIRE`` no test may be skipped."""

from __future__ import annotations

import pytest
from pgserver import pg_server  # noqa: F401  (the session's PostgreSQL server, started on first use)
from stop_require import required


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """CI (``STOP_REQUIRE`` set) cannot pass by skipping: any skip fails the session."""
    if required() and _SKIPPED and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if required() and _SKIPPED:
        terminalreporter.write_line(
            f"STOP_REQUIRE is set: {len(_SKIPPED)} skipped test(s) fail this session:", red=True
        )
        for line in _SKIPPED:
            terminalreporter.write_line(f"  {line}", red=True)
