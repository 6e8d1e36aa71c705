"""Choosing a backend from the run config and the environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lm._backend import LMBackend
from lm._offline import OfflineMutationModel
from lm._openai import DEFAULT_TIMEOUT_S, OpenAICompatibleBackend
from lm._retry import RetryPolicy
from lm._schema import check_lm_section
from outcome import ConfigError

__all__ = ("ConfigError", "backend_from_config")

_REASONING_EFFORTS = ("minimal", "low", "medium", "high")


def backend_from_config(cfg: Mapping[str, Any] | None, env: Mapping[str, str]) -> LMBackend:
    """The backend the run should use.

    ``cfg`` is the run config or its ``lm`` section: ``backend`` ("openai" | "offline" | absent),
    ``model``, ``base_url``, ``api_key_env`` (the *name* of the variable holding the key; keys
    never go in the config, which is recorded in the log), ``concurrency``, ``timeout_s``
    (per request, default 300; ``timeout`` is the old name), ``max_attempts``,
    ``reasoning_effort`` (sent to reasoning models), ``prices`` (read by ``lm.spend``). Environment: ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_MODEL``.
    Config values win over the environment. With neither a key nor a base URL nor
    ``backend: openai``, the result is the offline mutation model.
    """
    section = dict(cfg or {})
    if isinstance(section.get("lm"), Mapping):
        section = dict(section["lm"])
    check_lm_section(section)
    kind = section.get("backend")
    if kind == "offline":
        return OfflineMutationModel()
    key_var = str(section.get("api_key_env") or "OPENAI_API_KEY")
    api_key = env.get(key_var) or None
    base_url = section.get("base_url") or env.get("OPENAI_BASE_URL") or None
    model = section.get("model") or env.get("OPENAI_MODEL") or None
    if kind is None and api_key is None and base_url is None:
        return OfflineMutationModel()
    if model is None:
        raise ConfigError(
            "an LM endpoint is configured but no model is named; set lm.model in the run config "
            "or OPENAI_MODEL (e.g. gpt-4o-mini, or the model your vLLM/Ollama server serves)"
        )
    if base_url is None and api_key is None:
        raise ConfigError(f"lm.backend is 'openai' but {key_var} is not set and no base_url is given")
    retry = RetryPolicy(max_attempts=int(section.get("max_attempts", RetryPolicy.max_attempts)))
    timeout = section.get("timeout_s", section.get("timeout", DEFAULT_TIMEOUT_S))
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"lm.timeout_s must be a positive number of seconds, got {timeout!r}")
    effort = section.get("reasoning_effort")
    if effort is not None and effort not in _REASONING_EFFORTS:
        raise ConfigError(f"lm.reasoning_effort must be one of {', '.join(_REASONING_EFFORTS)}, got {effort!r}")
    return OpenAICompatibleBackend(
        base_url=base_url,
        api_key=api_key,
        model=str(model),
        concurrency=int(section.get("concurrency", 8)),
        timeout=float(timeout),
        retry=retry,
        reasoning_effort=effort,
    )
