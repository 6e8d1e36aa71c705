"""Guest -> host data: shapes, non-finite floats, rejected types, JSON round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sandbox_helpers import skip_unless

from sandbox import InvalidValue, Job, JobResult, SandboxConfig, SandboxPool, decode_value

PROGRAM = """
import numpy as np
class Obj:
    def __eq__(self, other):
        return True
def f(kind):
    return {
        "col": np.arange(20).reshape(20, 1),
        "flat": np.arange(20),
        "nan": float("nan"),
        "inf": [float("inf"), -float("inf")],
        "farr": np.array([1.5, np.nan, np.inf]),
        "tuple": (1, "a", None, True),
        "intkeys": {1: "one", (2, 3): "pair"},
        "npscalar": np.float32(2.5),
        "bigint": 2 ** 100,
        "set": {1, 2},
        "obj": Obj(),
        "objarr": np.array([object()]),
        "bytes": b"x",
        "fn": f,
        "tag": {"__ndarray__": 1},
    }[kind]
"""


@pytest.mark.anyio
async def test_value_kinds() -> None:
    skip_unless("any")
    async with SandboxPool(SandboxConfig(workers=2)) as pool:

        async def run(kind: str) -> JobResult:
            return await pool.run(Job(program=PROGRAM, function="f", args=[kind]))

        col = (await run("col")).value
        assert isinstance(col, np.ndarray) and col.shape == (20, 1) and col.dtype == np.int64
        assert (await run("flat")).value.shape == (20,)
        assert math.isnan((await run("nan")).value)
        assert (await run("inf")).value == [math.inf, -math.inf]
        farr = (await run("farr")).value
        assert farr.dtype == np.float64 and math.isnan(farr[1]) and farr[2] == math.inf
        assert (await run("tuple")).value == (1, "a", None, True)
        assert (await run("intkeys")).value == {1: "one", (2, 3): "pair"}
        scalar = (await run("npscalar")).value
        assert type(scalar) is np.float32 and scalar == 2.5
        assert (await run("bigint")).value == 2**100
        assert (await run("tag")).value == {"__ndarray__": 1}
        for kind in ("set", "obj", "objarr", "bytes", "fn"):
            r = await run(kind)
            assert r.status == "invalid_output", (kind, r)
            assert r.error


def test_job_result_json_round_trip() -> None:
    r = JobResult(
        status="ok",
        encoded_value={"__ndarray__": {"dtype": "int64", "shape": [2, 1], "data": [1, 2]}},
        wall_time_s=0.5,
        stdout="hi",
        violations=("seccomp:socket",),
    )
    text = json.dumps(r.to_json(), allow_nan=False)
    back = JobResult.from_json(json.loads(text))
    assert back == r
    assert back.value.shape == (2, 1)
    assert back.to_json()["value"]["__ndarray__"]["shape"] == [2, 1]


@pytest.mark.parametrize(
    "bad",
    [
        {"__ndarray__": {"dtype": "object", "shape": [1], "data": [1]}},
        {"__ndarray__": {"dtype": "int64", "shape": [3], "data": [1]}},
        {"__ndarray__": {"dtype": "int64", "shape": [1], "data": ["nan"]}},
        {"__float__": "huge"},
        {"__tuple__": 5},
        {"__dict__": [[[1], 2]]},
        {"__npscalar__": {"dtype": "str", "value": "x"}},
    ],
)
def test_decode_rejects_malformed(bad: object) -> None:
    with pytest.raises(InvalidValue):
        decode_value(bad)


_PLAIN_CASES: list[object] = [
    [1, 0, 1, True, None, "x"],
    [0.5, 2.0, -1e300],
    [1.5, float("nan"), float("inf"), -float("inf")],
    (1, 2.5, "a", None),
    (float("nan"),),
    [[1, 2], [3, float("-inf")], []],
    {"a": [1, 2.5], "b": (3, [4.0])},
    np.array([1.0, 2.5]),
    np.array([[1.0, np.nan], [np.inf, -np.inf]]),
]


@pytest.mark.parametrize("value", _PLAIN_CASES, ids=range(len(_PLAIN_CASES)))
def test_flat_lists_and_arrays_round_trip_like_the_element_walk(value: object) -> None:
    """The fast paths (a list of plain scalars, a finite float array, a numeric array's data)
    encode and decode exactly as the element-by-element walk does: NaN/inf still tagged."""
    from sandbox.stop_guest import encode

    text = encode.dumps(value, 1 << 20)
    walked = json.dumps(_walk(value), separators=(",", ":"), allow_nan=False).encode()
    assert text == walked
    back = decode_value(json.loads(text))
    assert repr(back) == repr(value) or (isinstance(value, np.ndarray) and np.array_equal(back, value, equal_nan=True))


def _walk(value: object) -> object:
    """The reference encoding, element by element (the format of ``stop_guest.encode``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": "nan" if math.isnan(value) else str(value)}
    if isinstance(value, list):
        return [_walk(v) for v in value]
    if isinstance(value, tuple):
        return {"__tuple__": [_walk(v) for v in value]}
    if isinstance(value, dict):
        return {k: _walk(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        data = [x if math.isfinite(x) else ("nan" if math.isnan(x) else str(x)) for x in value.ravel().tolist()]
        return {"__ndarray__": {"dtype": str(value.dtype), "shape": list(value.shape), "data": data}}
    return value


def test_decoded_lists_never_alias_the_stored_value() -> None:
    stored = [1, 2, 3]
    r = JobResult(status="ok", encoded_value=stored)
    r.value.append(4)
    assert r.encoded_value == [1, 2, 3] and r.value == [1, 2, 3]


def test_decode_rejects_bare_non_finite_floats_in_flat_lists() -> None:
    for bad in ([1.0, math.nan], [math.inf]):
        with pytest.raises(InvalidValue):
            decode_value(bad)
