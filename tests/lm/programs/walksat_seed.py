import random


def algorithm(formula):
    """Random-walk local search for 3-SAT; returns an assignment list or None on failure."""
    n = max(abs(lit) for clause in formula for lit in clause)
    assignment = [random.random() < 0.5 for _ in range(n + 1)]
    max_iter = 1000
    p = 0.4
    for _ in range(max_iter):
        unsat = [c for c in formula if not any(assignment[abs(l)] == (l > 0) for l in c)]
        if len(unsat) == 0:
            return assignment[1:]
        clause = random.choice(unsat)
        if random.random() < p:
            var = abs(random.choice(clause))
        else:
            best = None
            best_broken = len(formula) + 1
            for lit in clause:
                v = abs(lit)
                assignment[v] = not assignment[v]
                broken = sum(1 for c in formula if not any(assignment[abs(l)] == (l > 0) for l in c))
                assignment[v] = not assignment[v]
                if broken < best_broken:
                    best_broken = broken
                    best = v
            var = best
        assignment[var] = not assignment[var]
    return None
