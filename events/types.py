"""Core payload types of the spine. Other layers register theirs in ``events/`` modules too."""

from __future__ import annotations

from typing import Any

from events.registry import Payload, payload

__all__ = ("Note", "RunFailed", "RunFinished", "RunStarted")


@payload("run.started", volatile=("host",))
class RunStarted(Payload):
    """The root of a run: what was asked, with which seed and config (a run's identity input).

    ``host`` holds the machine facts announced at the start: the sandbox layers in force and the
    LM backend's description (offline or which endpoint). They are facts of this machine and
    this launch, so replay does not compare them; ``config`` (unsafe-mode flags included) is.
    """

    command: str
    seed: int
    config: dict[str, Any]
    host: dict[str, Any]


@payload("run.finished")
class RunFinished(Payload):
    summary: dict[str, Any]


@payload("run.failed")
class RunFailed(Payload):
    error: str
    detail: str


@payload("note")
class Note(Payload):
    """A free-form fact (demos, tests); prefer a dedicated type for anything with meaning."""

    text: str
    data: dict[str, Any]
