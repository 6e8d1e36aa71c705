"""The cache-first LM service: lookup separated from recording.

``answer`` never writes: it returns an ``LMAnswer`` whose ``record`` the caller (the proposer
agent) stores as the cache row in the same ``store.append`` as the answering event, so the cache
and the log cannot disagree. ``complete`` is the convenience that also writes the row.

Modes:
- ``LIVE``: cache first; on a miss call the backend; the answer is to be recorded.
- ``REPLAY``: strict; a miss raises ``CacheMiss`` naming the request and the causing event. The
  backend is never touched; pass ``backend=None`` (or a factory, which is never called).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from events import canonical_json
from lm._backend import LMBackend
from lm._errors import CacheCorrupt, CacheMiss, LMError
from lm._request import Completion, LMRequest, cache_key
from store import CacheEntry, EventStore

__all__ = ("RECORD_SCHEMA", "CacheMode", "LMAnswer", "LMService")

log = structlog.get_logger("lm.service")

RECORD_SCHEMA = 1

Source = Literal["cache", "live", "offline"]


class CacheMode(enum.StrEnum):
    LIVE = "live"
    REPLAY = "replay"


@dataclass(frozen=True)
class LMAnswer:
    """The answer to one request at one ordinal.

    ``record`` is the JSON cache row (request, ordinal, completions, which backend produced it);
    it holds no credentials and nothing time-dependent, so recording it twice is a no-op.
    """

    request: LMRequest
    ordinal: int
    completions: tuple[Completion, ...]
    source: Source
    cache_key: str
    record: dict[str, Any]

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.completions)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.completions)

    @property
    def needs_recording(self) -> bool:
        return self.source != "cache"

    def cache_entry(self) -> CacheEntry:
        return CacheEntry(self.cache_key, self.record)


def make_record(req: LMRequest, ordinal: int, completions: list[Completion], produced_by: str) -> dict[str, Any]:
    return {
        "schema": RECORD_SCHEMA,
        "request": req.canonical(),
        "ordinal": ordinal,
        "completions": [c.to_dict() for c in completions],
        "produced_by": produced_by,
    }


def _answer_from_record(req: LMRequest, ordinal: int, key: str, record: Mapping[str, Any]) -> LMAnswer:
    if canonical_json(record.get("request")) != canonical_json(req.canonical()) or record.get("ordinal") != ordinal:
        raise CacheCorrupt(f"cache row {key[:16]} holds a different request or ordinal than the one keyed to it")
    completions = tuple(Completion.from_dict(c) for c in record["completions"])
    if len(completions) != req.n:
        raise CacheCorrupt(f"cache row {key[:16]} holds {len(completions)} completions, request asks n={req.n}")
    return LMAnswer(req, ordinal, completions, "cache", key, dict(record))


class LMService:
    def __init__(
        self,
        backend: LMBackend | Callable[[], LMBackend] | None,
        store: EventStore,
        mode: CacheMode | str = CacheMode.LIVE,
        *,
        namespace: str = "",
    ) -> None:
        self.mode = CacheMode(mode)
        self._backend = backend
        #: the backend once known to be one (the Protocol isinstance check costs ~30 us a call)
        self._resolved: LMBackend | None = None
        self.store = store
        self.namespace = namespace

    @property
    def backend(self) -> LMBackend:
        """The backend, constructed on first use (never in replay mode)."""
        if self.mode is CacheMode.REPLAY:
            raise LMError("replay mode never uses a backend")
        if self._resolved is not None:
            return self._resolved
        b = self._backend
        if b is None:
            raise LMError("no LM backend configured")
        if not isinstance(b, LMBackend) and callable(b):
            b = b()
            self._backend = b
        self._resolved = b
        return b

    @property
    def default_model(self) -> str | None:
        if self.mode is CacheMode.REPLAY or self._backend is None:
            return None
        return self.backend.default_model

    async def aclose(self) -> None:
        """Close the backend if it was constructed and can be closed (the store is the caller's)."""
        b = self._backend
        if b is not None and isinstance(b, LMBackend):
            close = getattr(b, "aclose", None)
            if close is not None:
                await close()

    async def __aenter__(self) -> LMService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def key(self, req: LMRequest, ordinal: int) -> str:
        return cache_key(req, ordinal, self.namespace)

    async def answer(self, req: LMRequest, ordinal: int, *, cause: str | None = None) -> LMAnswer:
        """Look up, or produce, the answer to ``req`` at ``ordinal``; writes nothing."""
        key = self.key(req, ordinal)
        log.debug(
            "lm.lookup",
            key=key[:16],
            model=req.model,
            n=req.n,
            ordinal=ordinal,
            mode=self.mode.value,
            cause=cause,
        )
        record = await self.store.cache_get(key)
        if record is not None:
            return _answer_from_record(req, ordinal, key, record)
        if self.mode is CacheMode.REPLAY:
            raise CacheMiss(key=key, ordinal=ordinal, cause=cause, request=req.canonical())
        backend = self.backend
        completions = await backend.complete(req, ordinal=ordinal)
        if len(completions) != req.n:
            raise LMError(f"backend {backend.name} returned {len(completions)} completions for n={req.n}")
        record = make_record(req, ordinal, completions, backend.name)
        source: Source = "offline" if backend.offline else "live"
        return LMAnswer(req, ordinal, tuple(completions), source, key, record)

    async def complete(self, req: LMRequest, ordinal: int, *, cause: str | None = None) -> LMAnswer:
        """``answer`` plus recording the cache row (for tests and simple users without events)."""
        ans = await self.answer(req, ordinal, cause=cause)
        if ans.needs_recording:
            await self.store.append([], cache=[ans.cache_entry()])
        return ans
