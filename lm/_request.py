"""Requests, completions and the cache key: exactly what changes the reply, nothing else."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from events import canonical_json, sha256_hex

__all__ = ("KEY_SCHEMA", "Completion", "LMRequest", "cache_key")

#: Bumped if the canonical form ever changes (old cache rows then simply stop matching).
KEY_SCHEMA = 1


def _freeze_messages(messages: Sequence[Mapping[str, Any]]) -> tuple[tuple[tuple[str, Any], ...], ...]:
    out = []
    for m in messages:
        if "role" not in m or "content" not in m:
            raise ValueError(f"chat message needs 'role' and 'content': {dict(m)!r}")
        out.append(tuple(sorted((str(k), v) for k, v in m.items())))
    return tuple(out)


@dataclass(frozen=True)
class LMRequest:
    """One chat-completions request (immutable, hashable). Holds no credentials, ever.

    ``messages`` may be given as a list of dicts; it is stored frozen. ``canonical()`` is the
    dict of exactly what changes the reply: model, messages and every sampling parameter.
    Transport settings (timeouts, retries, endpoint URL, key) are deliberately left out.
    """

    model: str
    messages: Any  # accepted as Sequence[Mapping]; stored as nested tuples
    temperature: float = 0.7
    max_tokens: int | None = 1024
    n: int = 1
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", _freeze_messages(self.messages))
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif self.stop is not None:
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        object.__setattr__(self, "temperature", float(self.temperature))
        if self.top_p is not None:
            object.__setattr__(self, "top_p", float(self.top_p))

    @property
    def message_dicts(self) -> list[dict[str, Any]]:
        return [dict(m) for m in self.messages]

    def canonical(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": self.message_dicts,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "n": self.n,
            "top_p": self.top_p,
            "stop": list(self.stop) if self.stop is not None else None,
            "seed": self.seed,
        }

    def with_n(self, n: int) -> LMRequest:
        return LMRequest(
            model=self.model,
            messages=self.messages_as_list(),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            n=n,
            top_p=self.top_p,
            stop=self.stop,
            seed=self.seed,
        )

    def messages_as_list(self) -> list[dict[str, Any]]:
        return self.message_dicts

    @classmethod
    def from_canonical(cls, data: Mapping[str, Any]) -> LMRequest:
        return cls(
            model=data["model"],
            messages=data["messages"],
            temperature=data["temperature"],
            max_tokens=data["max_tokens"],
            n=data["n"],
            top_p=data["top_p"],
            stop=tuple(data["stop"]) if data["stop"] is not None else None,
            seed=data["seed"],
        )

    def request_hash(self) -> str:
        """sha256 of the canonical request alone (no ordinal): the request's content identity."""
        return sha256_hex(canonical_json({"schema": KEY_SCHEMA, "request": self.canonical()}))


def cache_key(req: LMRequest, ordinal: int, namespace: str = "") -> str:
    """sha256 of (canonical request, sample ordinal k[, namespace]).

    The k-th identical request maps to the k-th recorded answer. ``ordinal`` comes from the
    caller (the request's causal position in the log), never from an in-process counter, so
    concurrency cannot reorder which answer goes where. ``namespace`` is the session's
    causal position (``agents.identity.lm_namespace``); the empty namespace is the default.
    """
    if ordinal < 0:
        raise ValueError(f"ordinal must be >= 0, got {ordinal}")
    body: dict[str, Any] = {"schema": KEY_SCHEMA, "request": req.canonical(), "ordinal": ordinal}
    if namespace:
        body["namespace"] = namespace
    return sha256_hex(canonical_json(body))


@dataclass(frozen=True)
class Completion:
    """One sampled reply with its share of the token usage.

    ``finish_reason`` "length" with empty text is its own outcome: the token limit was used up
    (by reasoning, on reasoning models) before any answer text.

    When one HTTP call returns several choices, the call's prompt tokens are charged to its first
    choice and the completion tokens are split across choices, so sums over completions equal
    what the endpoint billed.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = "stop"
    #: None when the endpoint's usage was taken as reported; "estimated" (it reported none) or
    #: "clamped" (negative or absurd figures replaced by an estimate)
    usage_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
        }
        if self.usage_note is not None:
            out["usage_note"] = self.usage_note
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Completion:
        return cls(
            text=str(data["text"]),
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
            finish_reason=data.get("finish_reason"),
            usage_note=data.get("usage_note"),
        )
