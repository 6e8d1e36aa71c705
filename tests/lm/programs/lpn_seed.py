import numpy as np


def algorithm(train_samples, train_parity, test_samples):
    """Guess each test label at random (the learning-parity-with-noise starting point)."""
    predictions = np.random.binomial(1, 0.5, len(test_samples))
    return predictions
