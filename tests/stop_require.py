"""Skips that CI cannot pass by: ``STOP_REQUIRE`` names what must be present.

``STOP_REQUIRE`` is a comma-separated list (``.ci/run`` sets ``sandbox,chromium,postgres,tmpfs,tmux``).
A test that lacks something it needs calls :func:`require`: when the thing is listed, the test
fails with the reason; otherwise it is skipped with the reason shown. With ``STOP_REQUIRE`` set at
all, ``tests/conftest.py`` also fails the session if any test was skipped for any reason.
"""

from __future__ import annotations

import os

import pytest

__all__ = ("require", "required")


def required() -> frozenset[str]:
    """The names listed in ``STOP_REQUIRE`` (lower case, blanks dropped)."""
    raw = os.environ.get("STOP_REQUIRE", "")
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def require(what: str, reason: str) -> None:
    """``what`` is missing because of ``reason``: fail if it is required here, else skip."""
    if what.lower() in required():
        pytest.fail(f"{what} is required (STOP_REQUIRE={os.environ.get('STOP_REQUIRE')}) but missing: {reason}")
    pytest.skip(reason)
