"""Host side of the guest -> host data format (see ``stop_guest.encode`` for the tags).

``decode`` turns the tagged JSON into Python values (numpy arrays for ``__ndarray__``) and
rejects anything malformed with ``InvalidValue``; it never evaluates or unpickles anything.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ("InvalidValue", "canonical_json", "decode", "validate")

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_DTYPE_KINDS = frozenset("biuf")
MAX_DEPTH = 80
_PLAIN = frozenset({bool, int, str, type(None)})
_NUMBERS = frozenset({int, float, bool})


class InvalidValue(ValueError):
    """The guest's value is not in the data format."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dtype(name: Any) -> np.dtype[Any]:
    if not isinstance(name, str):
        raise InvalidValue("dtype must be a string")
    try:
        dtype = np.dtype(name)
    except TypeError as exc:
        raise InvalidValue(f"unknown dtype {name!r}") from exc
    if dtype.kind not in _DTYPE_KINDS:
        raise InvalidValue(f"dtype {name!r} is not bool/int/float")
    return dtype


def _scalar(x: Any, dtype: np.dtype[Any]) -> Any:
    if isinstance(x, str) and dtype.kind == "f" and x in _NONFINITE:
        return _NONFINITE[x]
    if type(x) not in (int, float, bool):
        raise InvalidValue(f"array element {x!r} is not a number")
    return x


def decode(data: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise InvalidValue("nesting too deep")
    if data is None or type(data) in (bool, int, str):
        return data
    if type(data) is float:
        if not math.isfinite(data):
            raise InvalidValue("bare non-finite float")
        return data
    if type(data) is list:
        kinds = set(map(type, data))
        if kinds <= _PLAIN:
            return list(data)  # a copy: the decoded value never aliases the stored one
        return [decode(x, depth + 1) for x in data]
    if type(data) is not dict:
        raise InvalidValue(f"unexpected JSON value of type {type(data).__name__}")
    if len(data) == 1:
        ((tag, body),) = data.items()
        if tag == "__float__":
            if body not in _NONFINITE:
                raise InvalidValue(f"bad __float__ {body!r}")
            return _NONFINITE[body]
        if tag == "__tuple__":
            if type(body) is not list:
                raise InvalidValue("__tuple__ needs a list")
            return tuple(decode(x, depth + 1) for x in body)
        if tag == "__dict__":
            if type(body) is not list:
                raise InvalidValue("__dict__ needs a list of pairs")
            out: dict[Any, Any] = {}
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise InvalidValue("__dict__ needs [key, value] pairs")
                key = decode(pair[0], depth + 1)
                try:
                    hash(key)
                except TypeError as exc:
                    raise InvalidValue("unhashable dict key") from exc
                out[key] = decode(pair[1], depth + 1)
            return out
        if tag == "__ndarray__":
            return _ndarray(body)
        if tag == "__npscalar__":
            if type(body) is not dict:
                raise InvalidValue("__npscalar__ needs an object")
            dtype = _dtype(body.get("dtype"))
            return dtype.type(_scalar(body.get("value"), dtype))
    return {str(k): decode(v, depth + 1) for k, v in data.items()}


def _ndarray(body: Any) -> np.ndarray[Any, Any]:
    if type(body) is not dict:
        raise InvalidValue("__ndarray__ needs an object")
    dtype = _dtype(body.get("dtype"))
    shape = body.get("shape")
    flat = body.get("data")
    if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        raise InvalidValue("bad ndarray shape")
    if type(flat) is not list or len(flat) != math.prod(shape):
        raise InvalidValue("ndarray data does not match its shape")
    # Elements are checked per kind, not one Python call each (an array of 20k numbers is common).
    values = flat if set(map(type, flat)) <= _NUMBERS else [_scalar(x, dtype) for x in flat]
    try:
        return np.array(values, dtype=dtype).reshape(shape)
    except (ValueError, OverflowError, TypeError) as exc:
        raise InvalidValue(f"bad ndarray data: {exc}") from exc


def validate(data: Any) -> None:
    """Raise ``InvalidValue`` unless ``data`` decodes."""
    decode(data)
