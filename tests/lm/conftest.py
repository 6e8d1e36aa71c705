"""Fixtures for the lm tests: anyio on asyncio, a fake endpoint, fast retry policies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lm.fake_server import FakeOpenAIServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv
