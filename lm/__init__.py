"""Language models for STOP: backends, the replayable cache, budgets, the STOP interface.

``LMService.answer`` looks up or produces an answer without writing; the proposer agent appends
the answering event together with ``answer.cache_entry()`` in one transaction. Replay mode never
touches a backend. With no endpoint configured, ``backend_from_config`` returns the offline
mutation proposer, labelled "offline, no language model".
"""

from __future__ import annotations

from lm._backend import LMBackend as LMBackend
from lm._budget import BudgetState as BudgetState
from lm._budget import LMBudget as LMBudget
from lm._budget import UnpricedModel as UnpricedModel
from lm._config import ConfigError as ConfigError
from lm._config import backend_from_config as backend_from_config
from lm._errors import BudgetExceeded as BudgetExceeded
from lm._errors import CacheCorrupt as CacheCorrupt
from lm._errors import CacheMiss as CacheMiss
from lm._errors import LMError as LMError
from lm._errors import LMFatalError as LMFatalError
from lm._errors import LMUnavailable as LMUnavailable
from lm._mutate import extract_blocks as extract_blocks
from lm._offline import OFFLINE_LABEL as OFFLINE_LABEL
from lm._offline import OfflineMutationModel as OfflineMutationModel
from lm._openai import OpenAICompatibleBackend as OpenAICompatibleBackend
from lm._request import Completion as Completion
from lm._request import LMRequest as LMRequest
from lm._request import cache_key as cache_key
from lm._retry import RetryPolicy as RetryPolicy
from lm._retry import should_retry as should_retry
from lm._service import CacheMode as CacheMode
from lm._service import LMAnswer as LMAnswer
from lm._service import LMService as LMService
from lm._stop import OccurrenceOrdinals as OccurrenceOrdinals
from lm._stop import StopLanguageModel as StopLanguageModel
from lm._tokens import count_tokens as count_tokens

__all__ = (
    "OFFLINE_LABEL",
    "BudgetExceeded",
    "BudgetState",
    "CacheCorrupt",
    "CacheMiss",
    "CacheMode",
    "Completion",
    "ConfigError",
    "LMAnswer",
    "LMBackend",
    "LMBudget",
    "LMError",
    "LMFatalError",
    "LMRequest",
    "LMService",
    "LMUnavailable",
    "OccurrenceOrdinals",
    "OfflineMutationModel",
    "OpenAICompatibleBackend",
    "RetryPolicy",
    "StopLanguageModel",
    "UnpricedModel",
    "backend_from_config",
    "cache_key",
    "count_tokens",
    "extract_blocks",
    "should_retry",
)
