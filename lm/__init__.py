"""Language models for STOP: backends, the replayable cache, run-level spend caps.

``LMService.answer`` looks up or produces an answer without writing; the proposer agent appends
the answering event together with ``answer.cache_entry()`` in one transaction. Replay mode never
touches a backend. With no endpoint configured, ``backend_from_config`` returns the offline
mutation proposer, labelled "offline, no language model". ``SpendLedger`` (``lm._spend``) is the
one budget mechanism for spend; improver budgets (calls per session) live in ``agents.bridge``.
"""

from __future__ import annotations

from lm._backend import LMBackend as LMBackend
from lm._config import ConfigError as ConfigError
from lm._config import backend_from_config as backend_from_config
from lm._errors import CacheCorrupt as CacheCorrupt
from lm._errors import CacheMiss as CacheMiss
from lm._errors import LMError as LMError
from lm._errors import LMFatalError as LMFatalError
from lm._errors import LMUnavailable as LMUnavailable
from lm._errors import MalformedReply as MalformedReply
from lm._mutate import extract_blocks as extract_blocks
from lm._offline import OFFLINE_LABEL as OFFLINE_LABEL
from lm._offline import OfflineMutationModel as OfflineMutationModel
from lm._openai import EndpointParams as EndpointParams
from lm._openai import OpenAICompatibleBackend as OpenAICompatibleBackend
from lm._request import Completion as Completion
from lm._request import LMRequest as LMRequest
from lm._request import cache_key as cache_key
from lm._retry import RetryPolicy as RetryPolicy
from lm._retry import should_retry as should_retry
from lm._service import CacheMode as CacheMode
from lm._service import LMAnswer as LMAnswer
from lm._service import LMService as LMService
from lm._spend import BUILTIN_PRICES as BUILTIN_PRICES
from lm._spend import CapHit as CapHit
from lm._spend import SpendCaps as SpendCaps
from lm._spend import SpendLedger as SpendLedger
from lm._spend import price_for as price_for
from lm._spend import price_snapshot as price_snapshot
from lm._tokens import count_tokens as count_tokens

__all__ = (
    "BUILTIN_PRICES",
    "OFFLINE_LABEL",
    "CacheCorrupt",
    "CacheMiss",
    "CacheMode",
    "CapHit",
    "Completion",
    "ConfigError",
    "EndpointParams",
    "LMAnswer",
    "LMBackend",
    "LMError",
    "LMFatalError",
    "LMRequest",
    "LMService",
    "LMUnavailable",
    "MalformedReply",
    "OfflineMutationModel",
    "OpenAICompatibleBackend",
    "RetryPolicy",
    "SpendCaps",
    "SpendLedger",
    "backend_from_config",
    "cache_key",
    "count_tokens",
    "extract_blocks",
    "price_for",
    "price_snapshot",
    "should_retry",
)
