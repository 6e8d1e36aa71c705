"""Shared machinery of the two parity tasks (with and without label noise)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tasks import checks
from tasks._types import Instance
from tasks.base import Task
from tasks.visible import VisibleParts

__all__ = ("N_BITS", "N_TEST", "N_TRAIN", "ParityTask")

N_BITS = 10
P_TRUE = 0.3
N_TRAIN = 100
N_TEST = 20
NOISE = 0.05

SEED_SOLUTION = '''\
import numpy as np


def algorithm(train_samples, train_parity, test_samples):
    """Predict each test label as an independent fair coin."""
    return np.random.binomial(1, 0.5, len(test_samples))
'''


_GENERATE = """\
def generate(seed):
    rng = np.random.RandomState(seed)
    true_bits = rng.binomial(1, P_TRUE, N_BITS)  # the secret subset of the bits
    samples = rng.binomial(1, 0.5, (N_TRAIN + N_TEST, N_BITS))
    parity = np.sum(samples * true_bits, axis=1) % 2
    train_parity = parity[:N_TRAIN]
"""
_NOISE = """\
    flips = rng.binomial(1, NOISE, N_TRAIN)  # label noise, on the training labels only
    train_parity = (train_parity + flips) % 2
"""
_SCORE = """\
    inputs = (samples[:N_TRAIN], train_parity, samples[N_TRAIN:])
    return inputs, parity[N_TRAIN:]


def score(inputs, test_parity, output):
    prediction = np.asarray(output)
    if prediction.shape != (N_TEST,) or not np.isin(prediction, (0, 1)).all():
        return 0.0  # invalid: exactly N_TEST labels in {0, 1}, nothing else
    return float(np.mean(prediction == test_parity))
"""


class ParityTask(Task):
    """Learning a parity of an unknown subset of 10 bits from 100 labelled samples."""

    noise: ClassVar[float]
    seed_solution = SEED_SOLUTION
    default_time_limit_s = 2.0
    visible_instances = 3

    def visible_parts(self) -> VisibleParts:
        constants: dict[str, Any] = {"N_BITS": N_BITS, "P_TRUE": P_TRUE, "N_TRAIN": N_TRAIN, "N_TEST": N_TEST}
        if self.noise:
            constants["NOISE"] = self.noise
        return VisibleParts(
            title="Learning parity with noise" if self.noise else "Learning parity (no label noise)",
            signature="algorithm(train_samples, train_parity, test_samples)",
            constants=constants,
            definitions=_GENERATE + (_NOISE if self.noise else "") + _SCORE,
            imports=("random", "time"),
        )

    def generate(self, index: int, seed: int) -> Instance:
        # Draw order of the reference: true bits, all 120 samples, then (noisy task) the flips.
        rng = np.random.RandomState(seed)
        true_bits = rng.binomial(1, P_TRUE, N_BITS)
        samples = rng.binomial(1, 0.5, (N_TRAIN + N_TEST, N_BITS))
        parity = np.sum(samples * true_bits, axis=1) % 2
        train_parity = parity[:N_TRAIN]
        if self.noise:
            flips = rng.binomial(1, self.noise, N_TRAIN)
            train_parity = (train_parity + flips) % 2
        return Instance(
            index=index,
            seed=seed,
            args=(samples[:N_TRAIN], train_parity, samples[N_TRAIN:]),
            hidden={"test_parity": parity[N_TRAIN:], "true_bits": true_bits},
        )

    def validate(self, instance: Instance, raw_value: Any) -> tuple[bool, Any, str]:
        return checks.binary_vector(raw_value, N_TEST)

    def score(self, instance: Instance, value: Any) -> float:
        correct = int(np.sum(value == instance.hidden["test_parity"]))
        return correct / N_TEST

    def explain(self, instance: Instance, value: Any, score: float) -> str:
        return f"accuracy {round(score * N_TEST)}/{N_TEST}"


def description(noise: bool, sizes: dict[str, int], limit: float) -> str:
    noise_text = (
        "Each training label was flipped independently with probability 0.05 (label noise); "
        "test labels are noise-free.\n"
        if noise
        else "There is no label noise.\n"
    )
    return (
        "Learn a parity function" + (" with noisy labels (learning parity with noise, LPN)" if noise else "") + ".\n\n"
        "Write a Python function `algorithm(train_samples, train_parity, test_samples)`.\n"
        f"- A hidden secret selects a subset of {N_BITS} bits; each bit is in the subset "
        f"independently with probability {P_TRUE}. The label of a sample is the parity (sum "
        "mod 2) of its bits in the subset.\n"
        f"- train_samples: numpy int array of shape ({N_TRAIN}, {N_BITS}) with entries in {{0, 1}}.\n"
        f"- train_parity: numpy int array of shape ({N_TRAIN},) with the training labels.\n"
        + noise_text
        + f"- test_samples: numpy int array of shape ({N_TEST}, {N_BITS}).\n"
        f"- Return exactly {N_TEST} predicted labels in {{0, 1}}: a list, or a numpy array of "
        f"shape ({N_TEST},). Any other shape, type or value (NaN, 2, a ({N_TEST}, 1) column, ...) "
        "is invalid and scores 0 on that instance.\n\n"
        "Scoring: the utility is the mean test accuracy over "
        f"{sizes['val']} instances (val). Each call must finish within {limit:g} s (wall clock, "
        "measured around the call only); a slower call, an exception or invalid output scores 0 "
        "on that instance. `numpy` and the standard library are available; there is no network "
        "and no file access. The random generators are seeded before each call."
    )
