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
