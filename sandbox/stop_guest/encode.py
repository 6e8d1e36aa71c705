"""Guest -> host value encoding: JSON only, with a few tags.

Exact types only (``type(x) is int``, never ``isinstance``): an ``int`` subclass with a custom
``__eq__`` (the classic "AlwaysEqual" reward hack) is rejected, not flattened.

- ``None``, ``bool``, ``int``, ``str``, finite ``float``: JSON natives.
- non-finite floats: ``{"__float__": "nan" | "inf" | "-inf"}`` so the host gets a real NaN/inf
  back and a validator can reject it (the JSON text itself stays strict).
- ``list``: JSON array; ``tuple``: ``{"__tuple__": [...]}``.
- ``dict`` with ``str`` keys (none of them a tag): JSON object; any other hashable keys of the
  supported scalar/tuple kinds: ``{"__dict__": [[key, value], ...]}``.
- numpy arrays (exact ``ndarray``) of bool/int/uint/float dtype:
  ``{"__ndarray__": {"dtype": "int64", "shape": [20, 1], "data": [...flat...]}}``; non-finite
  elements of float arrays are the strings ``"nan"``, ``"inf"``, ``"-inf"``.
- numpy scalars of those dtypes: ``{"__npscalar__": {"dtype": "float64", "value": 1.5}}``.
Everything else (sets, bytes, complex, callables, custom objects, object arrays) raises
``Unrepresentable`` naming the type and its path, and the job's status becomes invalid_output.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

TAGS = frozenset({"__float__", "__tuple__", "__dict__", "__ndarray__", "__npscalar__"})
MAX_DEPTH = 64
_PLAIN = frozenset({int, str, bool, type(None)})
_PLAIN_OR_FLOAT = _PLAIN | {float}


class Unrepresentable(Exception):
    """The return value is not data this boundary carries."""


def _float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return {"__float__": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def _element(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _plain(items: list[Any] | tuple[Any, ...]) -> bool:
    """Whether every element is already its own encoding (exact int/str/bool/None, finite
    float): the common return value (a list of labels or numbers) skips the per-element walk."""
    kinds = set(map(type, items))
    if kinds <= _PLAIN:
        return True
    return kinds <= _PLAIN_OR_FLOAT and all(math.isfinite(x) for x in items if type(x) is float)


def _numpy() -> Any:
    return sys.modules.get("numpy")


def to_data(value: Any, path: str = "$", depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise Unrepresentable(f"nesting deeper than {MAX_DEPTH} at {path}")
    t = type(value)
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        return _float(value)
    if t is list:
        if _plain(value):
            return value
        return [to_data(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if t is tuple:
        if _plain(value):
            return {"__tuple__": list(value)}
        return {"__tuple__": [to_data(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]}
    if t is dict:
        if all(type(k) is str for k in value) and not (len(value) == 1 and next(iter(value)) in TAGS):
            return {k: to_data(v, f"{path}.{k}", depth + 1) for k, v in value.items()}
        items = []
        for k, v in value.items():
            if type(k) not in (str, int, bool, float, tuple) and k is not None:
                raise Unrepresentable(f"dict key of type {type(k).__name__} at {path}")
            items.append([to_data(k, f"{path}<key>", depth + 1), to_data(v, f"{path}[{k!r}]", depth + 1)])
        return {"__dict__": items}
    np = _numpy()
    if np is not None:
        if t is np.ndarray:
            if value.dtype.kind not in "biuf":
                raise Unrepresentable(f"numpy array of dtype {value.dtype} at {path}")
            data = value.ravel().tolist()
            if value.dtype.kind == "f" and not all(map(math.isfinite, data)):
                data = [_element(x) for x in data]
            return {"__ndarray__": {"dtype": str(value.dtype), "shape": list(value.shape), "data": data}}
        if isinstance(value, np.generic) and t.__module__ == "numpy":
            if value.dtype.kind not in "biuf":
                raise Unrepresentable(f"numpy scalar of dtype {value.dtype} at {path}")
            return {"__npscalar__": {"dtype": str(value.dtype), "value": _element(value.item())}}
    raise Unrepresentable(f"values of type {t.__module__}.{t.__qualname__} are not data (at {path})")


def dumps(value: Any, limit: int) -> bytes:
    text = json.dumps(to_data(value), separators=(",", ":"), allow_nan=False).encode()
    if len(text) > limit:
        raise Unrepresentable(f"encoded value is {len(text)} bytes, over the {limit}-byte limit")
    return text
