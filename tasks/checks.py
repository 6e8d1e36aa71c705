"""Strict validators for untrusted guest output.

The guest's return value is data decoded by the sandbox, but it is still untrusted: it may have
the wrong type, shape or dtype, contain NaN, inf or huge numbers, or be a container of the wrong
length (the reference scored a (20, 1) prediction array at 1120% by broadcasting). Every
validator checks the length *before* iterating, accepts only plain numbers (``bool``, ``int``,
finite integral ``float`` and their numpy scalar types), and returns a normalised numpy array or
a reason for refusal. Nothing here calls a method of the value other than ``len`` on builtin
containers and ``ndarray`` attributes, so a custom ``__eq__``/``__len__`` never runs here.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import numpy.typing as npt

__all__ = ("Checked", "ascii_string", "binary_vector", "describe", "integer_vector", "permutation")

#: ``(ok, normalised value or None, reason)``
Checked = tuple[bool, Any, str]

_MAX_DESCRIBE = 60


def describe(value: object) -> str:
    """A short, safe description of an untrusted value for a refusal reason."""
    if isinstance(value, np.ndarray):
        return f"ndarray(shape={value.shape}, dtype={value.dtype})"
    kind = type(value).__name__
    if isinstance(value, (list, tuple, str, dict)):
        return f"{kind} of length {len(value)}"
    text = repr(value) if isinstance(value, (int, float, bool, type(None))) else kind
    return text if len(text) <= _MAX_DESCRIBE else text[:_MAX_DESCRIBE] + "..."


def _plain_integer(x: object) -> int | None:
    """``x`` as an int if it is a plain integral number (bool, int, integral finite float)."""
    if type(x) in (bool, int) or isinstance(x, (np.integer, np.bool_)):
        return int(x)  # type: ignore[call-overload]  # bool, int or a NumPy integer, checked above
    if type(x) is float or isinstance(x, np.floating):
        f = float(x)
        if math.isfinite(f) and f.is_integer() and abs(f) < 2**53:
            return int(f)
    return None


def integer_vector(value: object, length: int, *, lo: int, hi: int) -> Checked:
    """A 1-D sequence of exactly ``length`` integers in ``[lo, hi]`` -> int64 array."""
    if isinstance(value, np.ndarray):
        if type(value) is not np.ndarray:
            return False, None, f"expected a plain numpy array, got {type(value).__name__}"
        if value.shape != (length,):
            return False, None, f"expected shape ({length},), got {describe(value)}"
        if value.dtype.kind not in "biuf":
            return False, None, f"expected a numeric dtype, got {describe(value)}"
        if value.dtype.kind == "f":
            if not np.all(np.isfinite(value)):
                return False, None, "output contains NaN or inf"
            if not np.all(np.floor(value) == value):
                return False, None, "output contains non-integral values"
        arr = value.astype(np.float64) if value.dtype.kind == "f" else value
        if length and (np.min(arr) < lo or np.max(arr) > hi):
            return False, None, f"values must lie in [{lo}, {hi}]"
        return True, arr.astype(np.int64), "ok"
    if type(value) not in (list, tuple):
        return False, None, f"expected a list or 1-D numpy array of {length} values, got {describe(value)}"
    items = cast("list[object] | tuple[object, ...]", value)
    if len(items) != length:
        return False, None, f"expected {length} values, got {describe(value)}"
    out = np.empty(length, dtype=np.int64)
    for i, x in enumerate(items):
        v = _plain_integer(x)
        if v is None:
            return False, None, f"element {i} is not a finite integer: {describe(x)}"
        if not lo <= v <= hi:
            return False, None, f"element {i} = {describe(v)} is outside [{lo}, {hi}]"
        out[i] = v
    return True, out, "ok"


def binary_vector(value: object, length: int) -> Checked:
    """Exactly ``length`` values in {0, 1} (bools, ints or 0.0/1.0) -> int64 array of 0/1."""
    return integer_vector(value, length, lo=0, hi=1)


def permutation(value: object, n: int) -> Checked:
    """A permutation of ``range(n)`` -> int64 array."""
    ok, arr, reason = integer_vector(value, n, lo=0, hi=n - 1)
    if not ok:
        return ok, arr, reason
    assert isinstance(arr, np.ndarray)
    if len(np.unique(arr)) != n:
        return False, None, f"not a permutation of range({n}): repeated values"
    return True, arr, "ok"


def ascii_string(value: object, length: int, alphabet: str) -> Checked:
    """A ``str`` of exactly ``length`` characters from ``alphabet``."""
    if type(value) is not str:
        return False, None, f"expected a str, got {describe(value)}"
    if len(value) != length:
        return False, None, f"expected a string of length {length}, got length {len(value)}"
    bad = set(value) - set(alphabet)
    if bad:
        return False, None, f"characters outside {alphabet!r}: {sorted(bad)[:5]!r}"
    return True, value, "ok"


def as_int_array(a: npt.ArrayLike) -> npt.NDArray[np.int64]:
    return np.asarray(a, dtype=np.int64)
