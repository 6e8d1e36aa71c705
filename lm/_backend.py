"""The backend seam: anything that turns an ``LMRequest`` into ``n`` completions."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from lm._request import Completion, LMRequest

__all__ = ("LMBackend",)


@runtime_checkable
class LMBackend(Protocol):
    """A language model endpoint (or a stand-in for one).

    ``complete`` returns exactly ``req.n`` completions or raises. ``ordinal`` is the sample
    ordinal of the request (the same one the cache key uses); real endpoints ignore it, offline
    and scripted backends derive their randomness from it so repeated identical requests differ.
    ``offline`` is True when no language model is involved (answers are labelled "offline").
    ``describe()`` is a JSON-able, credential-free description for the run's first event.
    """

    name: str
    offline: bool

    @property
    def default_model(self) -> str | None: ...

    async def complete(self, req: LMRequest, *, ordinal: int = 0) -> list[Completion]: ...

    def describe(self) -> dict[str, Any]: ...
