"""STOP's downstream tasks, the meta-utility task and the HumanEval self-repair problems.

Each task generates its instances exactly as the STOP reference does, sends only the inputs to
the sandbox, validates the untrusted output strictly and scores it into [0, 1] on the host.
"""

from __future__ import annotations

from tasks._types import Evaluation as Evaluation
from tasks._types import Instance as Instance
from tasks._types import InstanceOutcome as InstanceOutcome
from tasks.base import SPLIT_SEEDS as SPLIT_SEEDS
from tasks.base import Task as Task
from tasks.base import TaskOptions as TaskOptions
from tasks.base import instance_digest as instance_digest
from tasks.evaluate import JobRunner as JobRunner
from tasks.evaluate import evaluate as evaluate
from tasks.evaluate import run_jobs as run_jobs
from tasks.meta import ConfigError as ConfigError
from tasks.meta import ImproverBudget as ImproverBudget
from tasks.meta import MetaTask as MetaTask
from tasks.meta import MetaUtilityConfig as MetaUtilityConfig
from tasks.registry import UnknownTaskError as UnknownTaskError
from tasks.registry import all_tasks as all_tasks
from tasks.registry import get_task as get_task
from tasks.registry import task_names as task_names

__all__ = (
    "SPLIT_SEEDS",
    "ConfigError",
    "Evaluation",
    "ImproverBudget",
    "Instance",
    "InstanceOutcome",
    "JobRunner",
    "MetaTask",
    "MetaUtilityConfig",
    "Task",
    "TaskOptions",
    "UnknownTaskError",
    "all_tasks",
    "evaluate",
    "get_task",
    "instance_digest",
    "run_jobs",
    "task_names",
)
