"""Helpers shared by the lm tests (imported by module name; tests/lm is on sys.path)."""

from __future__ import annotations

import pathlib

from lm import OpenAICompatibleBackend, RetryPolicy
from lm.fake_server import FakeOpenAIServer

PROGRAMS = pathlib.Path(__file__).parent / "programs"
FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)


def make_backend(srv: FakeOpenAIServer, **kw: object) -> OpenAICompatibleBackend:
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("timeout", 5.0)
    return OpenAICompatibleBackend(base_url=srv.base_url, api_key="test-key-0123", model="fake-model", **kw)  # type: ignore[arg-type]


def program(name: str) -> str:
    return (PROGRAMS / f"{name}.py").read_text()
