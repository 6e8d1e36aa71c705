"""What a run config may hold: the ``lm`` section's keys, and no secrets anywhere.

The config is recorded permanently in the run's first event (removing it later breaks the hash
chain), so a key, a token or a password must be refused before anything is written. Adding an
``lm`` key is one line in :data:`LM_KEYS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from outcome import ConfigError

__all__ = ("LM_KEYS", "check_lm_section", "refuse_secrets")

Check = Callable[[str, Any], None]


def _text(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{field} must be a non-empty string, got {value!r}")


def _choice(*allowed: str) -> Check:
    def check(field: str, value: Any) -> None:
        if value not in allowed:
            raise ConfigError(f"{field} must be one of {', '.join(map(repr, allowed))}, got {value!r}")

    return check


def _int_at_least(low: int) -> Check:
    def check(field: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{field} must be an integer >= {low}, got {value!r}")

    return check


def _backend(field: str, value: Any) -> None:
    if value not in ("openai", "openai-compatible", "offline"):
        raise ConfigError(f"unknown {field} {value!r}; use 'openai' (any OpenAI-compatible server) or 'offline'")


def _positive(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{field} must be a positive number, got {value!r}")


def _http_url(field: str, value: Any) -> None:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{field} must be an http(s) URL such as https://api.openai.com/v1, got {value!r}")


def _env_name(field: str, value: Any) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ConfigError(f"{field} must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not its value")


def _prices(field: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{field} must be a table of model -> prices, got {type(value).__name__}")


#: Every key the ``lm`` section may hold, with its check.
LM_KEYS: dict[str, Check] = {
    "backend": _backend,
    "model": _text,
    "base_url": _http_url,
    "api_key_env": _env_name,
    "concurrency": _int_at_least(1),
    "timeout": _positive,
    "timeout_s": _positive,
    "max_attempts": _int_at_least(1),
    "reasoning_effort": _choice("minimal", "low", "medium", "high"),
    "prices": _prices,
    "max_cost_usd": _positive,
    "max_tokens": _int_at_least(1),
    "max_lm_calls": _int_at_least(1),
}


def check_lm_section(section: Mapping[str, Any], where: str = "lm") -> None:
    """Refuse unknown keys and out-of-range values, naming the field."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a table/mapping, got {type(section).__name__}")
    refuse_secrets(section, where)
    unknown = sorted(str(k) for k in section if k not in LM_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; allowed: {', '.join(LM_KEYS)}")
    for key, value in section.items():
        LM_KEYS[key](f"{where}.{key}", value)


# ---- secrets -------------------------------------------------------------------------------------

#: Words that make a key look like it holds a secret (matched on the key's words, any case).
_SECRET_WORDS = frozenset(
    {"key", "apikey", "token", "secret", "password", "passwd", "pwd", "credential", "credentials", "auth"}
)
#: A key naming where a secret lives (``api_key_env: OPENAI_API_KEY``) is fine; its value is checked.
_NAMING_SUFFIXES = ("env", "var", "variable")
_KEY_VALUE = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_-]{16,}|\bBearer\s+\S{8,}", re.IGNORECASE)


def _words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def _secret_key(key: str) -> bool:
    words = _words(key)
    if words and words[-1] in _NAMING_SUFFIXES:
        return False
    return any(w in _SECRET_WORDS for w in words) or "apikey" in "".join(words)


def _secret_in_text(text: str) -> str | None:
    """Why a string looks like it carries a credential, or None."""
    if _KEY_VALUE.search(text):
        return "it looks like an API key"
    if "://" in text:
        try:
            parts = urlsplit(text.strip())
            has_user = parts.username is not None or parts.password is not None
        except ValueError:
            return None
        if has_user:
            return "the URL embeds credentials (user:password@)"
        if any(_secret_key(name) for name, _ in parse_qsl(parts.query)):
            return "the URL carries a credential in its query string"
    return None


def refuse_secrets(data: Any, where: str = "config") -> None:
    """Raise ``ConfigError`` naming the first field that looks like a secret (the value is never shown)."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            field = f"{where}.{key}"
            if isinstance(key, str) and _secret_key(key):
                raise ConfigError(
                    f"{field} looks like a secret, and configs are recorded permanently in the log: remove it and "
                    "set OPENAI_API_KEY in the environment",
                    hint="(or name another variable with lm.api_key_env)",
                )
            refuse_secrets(value, field)
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            refuse_secrets(value, f"{where}[{i}]")
    elif isinstance(data, str):
        reason = _secret_in_text(data)
        if reason:
            raise ConfigError(
                f"{where}: {reason}; configs are recorded permanently in the log",
                hint="remove the credential from the config and put the key in the environment (OPENAI_API_KEY)",
            )
