import math
import random

import numpy as np


def algorithm(F, D, P):
    """Simulated annealing over permutations for a quadratic assignment objective."""
    n = len(F)

    def cost(perm):
        total = 0.0
        for i in range(n):
            for j in range(n):
                total += F[i][j] * D[perm[i]][perm[j]]
        return total - 0.5 * sum(P[i][perm[i]] for i in range(n))

    current = list(range(n))
    random.shuffle(current)
    current_cost = cost(current)
    best, best_cost = list(current), current_cost
    temperature = 1.0
    cooling_rate = 0.95
    iterations = 200
    for step in range(iterations):
        i, j = random.sample(range(n), 2)
        candidate = list(current)
        candidate[i], candidate[j] = candidate[j], candidate[i]
        delta = cost(candidate) - current_cost
        if delta < 0 or random.random() < math.exp(-delta / max(temperature, 1e-9)):
            current, current_cost = candidate, current_cost + delta
            if current_cost < best_cost:
                best, best_cost = list(current), current_cost
        temperature *= cooling_rate
    return np.array(best)
