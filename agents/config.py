"""The run configuration: one file (JSON or TOML) plus command-line overrides.

Everything here is recorded in the run's first event, so it must never hold secrets: the LM
key stays in the environment (``lm.api_key_env`` names the variable).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm._schema import check_lm_section, refuse_secrets
from outcome import ConfigError
from tasks.meta import ImproverBudget, MetaUtilityConfig

__all__ = ("SMALL_OFFLINE", "ConfigError", "RunConfig", "load_config")

_ADOPT_RULES = ("nonzero", "better")


@dataclass(frozen=True)
class RunConfig:
    """Defaults follow the STOP reference budgets."""

    meta_utility: MetaUtilityConfig = field(default_factory=MetaUtilityConfig)
    #: Generations of self-improvement (``stop self-improve --generations``).
    generations: int = 3
    #: "nonzero": adopt unless the new improver failed or scored 0 (the reference rule);
    #: "better": adopt only if its meta-utility beats the current improver's.
    adopt: str = "nonzero"
    #: LM section, passed to ``lm.backend_from_config`` (backend, model, base_url, api_key_env…).
    lm: dict[str, Any] = field(default_factory=dict)
    #: Sampling defaults for requests an improver makes.
    max_tokens: int = 1024
    #: Sandbox: warm workers and the wall limit of one improver session.
    sandbox_workers: int = 2
    #: Improver sessions one runner runs at once (they mostly wait on the model, so many more
    #: than cores; CPU-bound batches stay bounded by ``sandbox_workers``).
    max_sessions: int = 32
    session_timeout_s: float = 600.0
    #: Development only, loudly logged and recorded: run untrusted code without isolation.
    unsafe_no_sandbox: bool = False
    #: Leases on work (seconds) before another worker may take it over.
    lease_s: float = 30.0
    #: Whole-run spend caps (None: none). Committed spend (spent + in-flight worst case) never
    #: crosses them: the run stops with status budget_exhausted and resumes with a raised cap.
    max_cost_usd: float | None = None
    max_tokens_total: int | None = None
    max_lm_calls: int | None = None
    #: With a signing key (``STOP_SIGNING_KEY``): a signed checkpoint after every N events
    #: (and always at the run's end).
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        if not isinstance(self.generations, int) or isinstance(self.generations, bool) or self.generations < 1:
            raise ConfigError(f"generations must be an integer >= 1, got {self.generations!r}")
        if self.adopt not in _ADOPT_RULES:
            raise ConfigError(f"adopt must be one of {_ADOPT_RULES}, got {self.adopt!r}")
        if not isinstance(self.lm, dict):
            raise ConfigError(f"lm must be a table/mapping, got {type(self.lm).__name__}")
        check_lm_section(self.lm)
        if not isinstance(self.sandbox_workers, int) or not 1 <= self.sandbox_workers <= 64:
            raise ConfigError(f"sandbox_workers must be an integer in 1..64, got {self.sandbox_workers!r}")
        if (
            isinstance(self.max_sessions, bool)
            or not isinstance(self.max_sessions, int)
            or not 1 <= self.max_sessions <= 1024
        ):
            raise ConfigError(f"max_sessions must be an integer in 1..1024, got {self.max_sessions!r}")
        for name in ("session_timeout_s", "lease_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if (
            isinstance(self.checkpoint_every, bool)
            or not isinstance(self.checkpoint_every, int)
            or self.checkpoint_every < 2
        ):
            raise ConfigError(f"checkpoint_every must be an integer >= 2, got {self.checkpoint_every!r}")
        _check_caps(self)

    @property
    def improver(self) -> ImproverBudget:
        return self.meta_utility.improver

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"the config must be a table/mapping, got {type(data).__name__}")
        # ``notify`` (alerts) is operational, read by agents.notify from the file: never recorded
        data = {k: v for k, v in data.items() if k != "notify"}
        refuse_secrets(data)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; allowed: {', '.join(names)}")
        kwargs = dict(data)
        if "meta_utility" in kwargs:
            kwargs["meta_utility"] = MetaUtilityConfig.from_dict(kwargs["meta_utility"])
        if "lm" in kwargs and isinstance(kwargs["lm"], Mapping):
            kwargs["lm"] = dict(kwargs["lm"])
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise ConfigError(f"bad config: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["meta_utility"] = self.meta_utility.to_dict()
        return out

    def with_overrides(self, **changes: Any) -> RunConfig:
        """Apply command-line overrides (``None`` means "not given")."""
        data = self.to_dict()
        for key, value in changes.items():
            if value is None:
                continue
            if key in ("tasks", "runs", "meta_utility_budget"):
                data["meta_utility"][key] = list(value) if key == "tasks" else value
            elif key in ("responses_per_call", "lm_calls", "utility_calls"):
                data["meta_utility"].setdefault("improver", {})[key] = value
            elif key == "model":
                data["lm"] = {**data["lm"], "model": value}
            else:
                data[key] = value
        return RunConfig.from_dict(data)


def _check_caps(cfg: RunConfig) -> None:
    if cfg.max_cost_usd is not None and (
        isinstance(cfg.max_cost_usd, bool) or not isinstance(cfg.max_cost_usd, (int, float)) or cfg.max_cost_usd < 0
    ):
        raise ConfigError(f"max_cost_usd must be a number of USD >= 0, got {cfg.max_cost_usd!r}")
    for name in ("max_tokens_total", "max_lm_calls"):
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ConfigError(f"{name} must be an integer >= 0, got {v!r}")


#: The main job of ``make run``: offline model, 2 generations, small budgets (minutes, not hours).
SMALL_OFFLINE: dict[str, Any] = {
    "generations": 2,
    "meta_utility": {
        "tasks": ["parity_noise"],
        "runs": 2,
        "meta_utility_budget": 3,
        "improver": {"responses_per_call": 3, "lm_calls": 2, "utility_calls": 4},
    },
}


def load_config(path: str | Path | None) -> RunConfig:
    """Read a JSON or TOML config; a clear ``ConfigError`` names what is wrong."""
    if path is None:
        return RunConfig()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror}") from e
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"config {p} is not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'}: {e}") from e
    return RunConfig.from_dict(data)
