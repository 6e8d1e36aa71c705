"""Run many evaluations in one sandbox pool (tests only)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from sandbox import SandboxConfig, SandboxPool
from tasks import Evaluation, Task, evaluate

Spec = tuple[Task, str, str, Sequence[int] | None]


def evaluate_many(specs: Sequence[Spec], *, workers: int = 2) -> list[Evaluation]:
    """Evaluate every (task, program, split, indices) concurrently; results in spec order."""

    async def main() -> list[Evaluation]:
        out: list[Evaluation | None] = [None] * len(specs)
        async with SandboxPool(SandboxConfig(workers=workers)) as pool:

            async def one(k: int, spec: Spec) -> None:
                task, program, split, indices = spec
                out[k] = await evaluate(task, program, split, pool, indices=indices)

            async with anyio.create_task_group() as tg:
                for k, spec in enumerate(specs):
                    tg.start_soon(one, k, spec)
        return [e for e in out if e is not None]

    return anyio.run(main)
