"""Canonical JSON: the one byte encoding that identities and hashes are computed over.

Rules (the log's on-disk format depends on them, so they never change silently):
- keys sorted, no insignificant white space, UTF-8 (not ASCII-escaped);
- floats are written by ``repr`` (Python's shortest round-trip form), which is exact for IEEE-754
  doubles: ``json.loads(dumps(x)) == x`` bit for bit, ``-0.0`` included;
- NaN and +/-infinity are rejected (JSON cannot carry them; a payload holding one is a bug);
- tuples encode as lists, so payloads should hold JSON-native values (dict, list, str, int,
  float, bool, None); ``normalise`` maps a value to exactly what reading it back gives.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ("CanonicalError", "canonical_bytes", "canonical_json", "normalise", "sha256_hex")


class CanonicalError(ValueError):
    """A value that has no canonical JSON form (NaN, infinity, a non-JSON type)."""


def canonical_json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise CanonicalError(f"value has no canonical JSON form: {e}") from e


def canonical_bytes(value: Any) -> bytes:
    return canonical_json(value).encode("utf-8")


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def normalise(value: Any) -> Any:
    """The value as it reads back from the log (tuples become lists, keys become strings)."""
    return json.loads(canonical_json(value))
