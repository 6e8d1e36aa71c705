"""The meta-utility task: its solutions are improver programs.

An improver is a program defining ``improve_algorithm(initial_solution, utility,
language_model)``. Its meta-utility is the mean, over ``runs`` runs on each downstream task, of
the held-out utility of the solution it returns from that task's seed solution under a fixed
budget. Running improvers (in the sandbox, their LM and utility calls answered through the event
log) belongs to the agents; this module fixes the task, the text shown to an improver, and the
budgets. Defaults are the STOP reference's: 6 responses per LM call, 4 LM calls, a utility budget
of 25, and 5 runs on parity_noise.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from outcome import ConfigError
from tasks.registry import TASKS

__all__ = (
    "SEED_IMPROVER",
    "ConfigError",
    "ImproverBudget",
    "MetaTask",
    "MetaUtilityConfig",
    "meta_utility_value",
)


def _positive_int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be an integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ConfigError(f"{where}.{key} must be >= 1, got {value}")
    return value


def _check_keys(where: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class ImproverBudget:
    """What one improver run may spend."""

    responses_per_call: int = 6
    lm_calls: int = 4
    utility_calls: int = 25
    #: Wall-clock limit of one improver run in the sandbox (``None``: no limit, as the reference).
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        for key in ("responses_per_call", "lm_calls", "utility_calls"):
            _positive_int("improver_budget", key, getattr(self, key))
        if self.timeout_s is not None:
            t = self.timeout_s
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
                raise ConfigError(f"improver_budget.timeout_s must be a positive number or null, got {t!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImproverBudget:
        _check_keys("improver_budget", data, [f.name for f in dataclasses.fields(cls)])
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MetaUtilityConfig:
    """How an improver is scored: which tasks, how many runs, under which budgets."""

    tasks: tuple[str, ...] = ("parity_noise",)
    runs: int = 5
    improver: ImproverBudget = field(default_factory=ImproverBudget)
    #: How many times an improver being improved may call the meta-utility.
    meta_utility_budget: int = 25
    #: Split the improver is selected on, and the held-out split reported.
    selection_split: str = "val"
    report_split: str = "test"

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str) or not isinstance(self.tasks, tuple) or not self.tasks:
            raise ConfigError(f"meta_utility.tasks must be a non-empty list of task names, got {self.tasks!r}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"meta_utility.tasks: unknown task(s) {unknown}; known: {', '.join(TASKS)}")
        _positive_int("meta_utility", "runs", self.runs)
        _positive_int("meta_utility", "meta_utility_budget", self.meta_utility_budget)
        if not isinstance(self.improver, ImproverBudget):
            raise ConfigError("meta_utility.improver must be an ImproverBudget")
        for key in ("selection_split", "report_split"):
            if getattr(self, key) not in ("val", "test"):
                raise ConfigError(f"meta_utility.{key} must be 'val' or 'test', got {getattr(self, key)!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetaUtilityConfig:
        _check_keys("meta_utility", data, [f.name for f in dataclasses.fields(cls)])
        kwargs = dict(data)
        if "tasks" in kwargs:
            tasks = kwargs["tasks"]
            if isinstance(tasks, str) or not isinstance(tasks, (list, tuple)):
                raise ConfigError(f"meta_utility.tasks must be a list of task names, got {tasks!r}")
            kwargs["tasks"] = tuple(tasks)
        if "improver" in kwargs:
            kwargs["improver"] = ImproverBudget.from_dict(kwargs["improver"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["tasks"] = list(self.tasks)
        return out


def meta_utility_value(held_out_utilities: Sequence[float]) -> float:
    """The meta-utility: the mean of the held-out utilities of the improved solutions.

    A failed improver run contributes 0 (the agents record it as 0 before averaging).
    """
    if not held_out_utilities:
        return 0.0
    values = [min(1.0, max(0.0, u)) if math.isfinite(u) else 0.0 for u in held_out_utilities]
    return math.fsum(values) / len(values)


SEED_IMPROVER = '''\
"""The seed improver: ask the language model for variants and keep the best by utility."""

# Built rather than written out, so this program's own text holds no fence: an improver that is
# itself sent to the language model inside a fenced block must not break that block.
FENCE = "`" * 3


def extract_code(text):
    """The largest fenced code block of a reply (the whole reply if it has none)."""
    blocks = []
    parts = text.split(FENCE)
    for i in range(1, len(parts), 2):
        block = parts[i]
        first_newline = block.find("\\n")
        if first_newline != -1 and block[:first_newline].strip().isidentifier():
            block = block[first_newline + 1:]
        blocks.append(block)
    return max(blocks, key=len) if blocks else text


def improve_algorithm(initial_solution, utility, language_model):
    """Improve a solution according to a utility function."""
    expertise = (
        "You are an expert computer science researcher and programmer, "
        "especially skilled at optimizing algorithms."
    )
    message = f"""Improve the following solution:
{FENCE}python
{initial_solution}
{FENCE}

You will be evaluated based on this score function:
{utility.description}

You must return an improved solution. Be as creative as you can under the constraints.
Your primary improvement must be novel and non-trivial. First, propose an idea, then implement it."""
    n_messages = min(language_model.max_responses_per_call, utility.budget)
    new_solutions = language_model.batch_prompt(expertise, [message] * n_messages, temperature=0.7)
    new_solutions = [extract_code(s) for s in new_solutions]
    return max(new_solutions, key=lambda s: utility(s))
'''


def _description(config: MetaUtilityConfig) -> str:
    b = config.improver
    tasks = ", ".join(config.tasks)
    return f"""\
Improve an improver.

A solution here is a program defining
    improve_algorithm(initial_solution, utility, language_model) -> str
that takes a program text (`initial_solution`), a `utility` and a `language_model`, and returns
an improved program text.

- `utility(program) -> float` scores a program in [0, 1] on training instances (higher is
  better). `utility.description` is the text that explains the downstream task and its scoring;
  `utility.budget` is the number of calls allowed ({b.utility_calls}). Calls beyond the budget
  raise an error. The utility is evaluated outside your program; you cannot change its budget.
- `language_model.batch_prompt(expertise, messages, temperature=0.7) -> list[str]` returns one
  reply per message; `language_model.prompt(expertise, message, n_responses=1, temperature=0.7)`
  returns a list of replies. At most {b.lm_calls} language-model calls are allowed, with at most
  {b.responses_per_call} responses per call (`language_model.max_responses_per_call`).

Your improver is scored by its meta-utility: it is run {config.runs} times on the seed solution of
each downstream task ({tasks}), each run with a fresh budget as above, and the held-out utility
of each returned program is averaged. An improver that raises, times out or returns something
that is not a program scores 0 for that run. The improver runs in a sandbox with no network and
no file access; its only ways out are the `utility` and `language_model` objects.
"""


def _utility_text(config: MetaUtilityConfig) -> str:
    """The meta-utility's visible program (``utility.str`` of an improver's improver), with the
    run's real budgets. The host objects it names are described, not importable."""
    b = config.improver
    return f'''\
"""The meta-utility: how an improver, `improve_algorithm(initial_solution, utility,
language_model)`, is scored.

meta_utility(improve_str) runs the improver {config.runs} times on the seed solution of each
downstream task ({", ".join(config.tasks)}). Every run gets a fresh `utility` for that task
(its val instances, at most UTILITY_BUDGET calls) and a fresh `language_model` (at most
LM_CALL_BUDGET calls, each with at most MAX_RESPONSES_PER_CALL responses). The program a run
returns is scored on that task's {config.selection_split} instances; a run that raises, times out or returns
no program scores 0. The meta-utility is the mean over all runs (the held-out
{config.report_split} scores are recorded for reports, never returned). It can only be called
META_UTILITY_BUDGET times: a call past that raises an error. Budgets are kept by the host, outside
your program: nothing your program does changes them.

`downstream_utility`, `language_model_with_budget`, `seed_solution` and `task_utility`
stand for what the host provides; they are not importable.
"""

DOWNSTREAM_TASKS = {json.dumps(list(config.tasks))}
RUNS = {config.runs}
UTILITY_BUDGET = {b.utility_calls}
LM_CALL_BUDGET = {b.lm_calls}
MAX_RESPONSES_PER_CALL = {b.responses_per_call}
META_UTILITY_BUDGET = {config.meta_utility_budget}


def meta_utility(improve_str: str) -> float:
    namespace = {{}}
    exec(improve_str, namespace)
    improve_algorithm = namespace["improve_algorithm"]
    scores = []
    for task in DOWNSTREAM_TASKS:
        for run in range(RUNS):
            utility = downstream_utility(task, budget=UTILITY_BUDGET)
            language_model = language_model_with_budget(LM_CALL_BUDGET, MAX_RESPONSES_PER_CALL)
            try:
                improved = improve_algorithm(seed_solution(task), utility, language_model)
                scores.append(task_utility(task, improved, split={config.selection_split!r}))
            except Exception:
                scores.append(0.0)
    return sum(scores) / len(scores)
'''


class MetaTask:
    """The meta-utility task: solutions are improvers (``improve_algorithm``)."""

    name: ClassVar[str] = "meta_improver"
    function_name: ClassVar[str] = "improve_algorithm"
    seed_solution: ClassVar[str] = SEED_IMPROVER

    def __init__(self, config: MetaUtilityConfig | None = None) -> None:
        self.config = config or MetaUtilityConfig()

    @property
    def description(self) -> str:
        return _description(self.config)

    @property
    def utility_text(self) -> str:
        """The visible meta-utility program an improver is shown as ``utility.str``."""
        return _utility_text(self.config)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "function": self.function_name,
            "config": self.config.to_dict(),
            "description": self.description,
            "utility_str": self.utility_text,
        }
