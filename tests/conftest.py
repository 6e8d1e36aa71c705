"""Shared test configuration: anyio on asyncio, structlog quiet unless a test captures it."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
