"""parity_noiseless — parity without label noise.

Reference bug fixed: predictions of shape (20, 1) broadcast against labels of shape (20,) and
scored 1120% there. Here the validator demands exactly 20 values in {0, 1}.
"""

from __future__ import annotations

from typing import ClassVar

from tasks._parity import ParityTask, description

__all__ = ("ParityNoiseless",)


class ParityNoiseless(ParityTask):
    name: ClassVar[str] = "parity_noiseless"
    noise: ClassVar[float] = 0.0
    split_sizes: ClassVar[dict[str, int]] = {"val": 20, "test": 20}
    description: ClassVar[str] = description(False, {"val": 20, "test": 20}, 2.0)
