"""parity_noise — learning parity with noise (LPN), STOP's training task.

Reference quirk kept as an option (``TaskOptions(fail_zeroes=True)``), off by default: one
failed instance (timeout, exception, invalid output) zeroes the whole utility.
"""

from __future__ import annotations

from typing import ClassVar

from tasks._parity import ParityTask, description

__all__ = ("ParityNoise",)


class ParityNoise(ParityTask):
    name: ClassVar[str] = "parity_noise"
    noise: ClassVar[float] = 0.05
    split_sizes: ClassVar[dict[str, int]] = {"val": 20, "test": 50}
    description: ClassVar[str] = description(True, {"val": 20, "test": 50}, 2.0)
