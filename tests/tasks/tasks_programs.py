"""Program texts used by the task tests: honest strong and trivial solutions, and adversaries.

These are *programs*: they only ever run in the sandbox, never in the test process.
"""

from __future__ import annotations

STRONG: dict[str, str] = {}
TRIVIAL: dict[str, str] = {}

_PARITY_STRONG = '''\
import itertools

import numpy as np


def algorithm(train_samples, train_parity, test_samples):
    """Brute force over all 2**10 parities; keep the one with fewest training errors."""
    n = train_samples.shape[1]
    masks = np.array(list(itertools.product([0, 1], repeat=n)))
    predictions = (train_samples @ masks.T) % 2
    errors = np.sum(predictions != train_parity[:, None], axis=0)
    best = masks[int(np.argmin(errors))]
    return (test_samples @ best) % 2
'''
STRONG["parity_noise"] = STRONG["parity_noiseless"] = _PARITY_STRONG
TRIVIAL["parity_noise"] = TRIVIAL["parity_noiseless"] = '''\
def algorithm(train_samples, train_parity, test_samples):
    return [0] * len(test_samples)
'''

STRONG["str_grid_dist"] = '''\
import functools


def algorithm(t, dist):
    """Exact construction by dynamic programming over (position, previous char, remaining)."""
    n = len(t)
    target = dist - sum(a != b for a, b in zip(t, t[1:]))

    def step(i, prev, c):
        return (c != t[i]) + (prev is not None and c != prev)

    @functools.lru_cache(maxsize=None)
    def feasible(i, prev, remaining):
        if remaining < 0:
            return False
        if i == n:
            return remaining == 0
        return any(feasible(i + 1, c, remaining - step(i, prev, c)) for c in "AB")

    out, prev, remaining = [], None, target
    for i in range(n):
        for c in "AB":
            if feasible(i + 1, c, remaining - step(i, prev, c)):
                out.append(c)
                remaining -= step(i, prev, c)
                prev = c
                break
    return "".join(out)
'''
TRIVIAL["str_grid_dist"] = '''\
def algorithm(t, dist):
    return t
'''

STRONG["modified_quadratic_assignment"] = '''\
import numpy as np


def algorithm(F, D, P):
    """Random restarts of best-improvement 2-swap local search; exact swap deltas."""
    n = len(F)
    rows = np.arange(n)

    def cost(a):
        return float(np.sum(F * D[np.ix_(a, a)]) - 0.5 * np.sum(P[rows, a]))

    best, best_cost = None, float("inf")
    for _ in range(20):
        a = np.random.permutation(n)
        c = cost(a)
        improved = True
        while improved:
            improved = False
            for i in range(n - 1):
                for j in range(i + 1, n):
                    a[i], a[j] = a[j], a[i]
                    c2 = cost(a)
                    if c2 < c - 1e-12:
                        c, improved = c2, True
                    else:
                        a[i], a[j] = a[j], a[i]
        if c < best_cost:
            best, best_cost = a.copy(), c
    return best.tolist()
'''
TRIVIAL["modified_quadratic_assignment"] = '''\
def algorithm(F, D, P):
    return list(range(len(F)))
'''

STRONG["three_sat"] = '''\
import random


def algorithm(formula):
    """WalkSAT with incremental true-literal counts and a generous flip budget."""
    n = max(abs(lit) for clause in formula for lit in clause)
    occurs = {v: [] for v in range(1, n + 1)}
    for ci, clause in enumerate(formula):
        for lit in clause:
            occurs[abs(lit)].append(ci)
    a = [False] + [random.random() < 0.5 for _ in range(n)]
    true_count = [sum(a[abs(l)] == (l > 0) for l in c) for c in formula]
    unsat = {i for i, k in enumerate(true_count) if k == 0}

    def breaks(v):
        return sum(
            1
            for cj in occurs[v]
            if true_count[cj] == 1 and any(abs(l) == v and a[v] == (l > 0) for l in formula[cj])
        )

    for _ in range(200000):
        if not unsat:
            break
        clause = formula[random.choice(tuple(unsat))]
        if random.random() < 0.3:
            v = abs(random.choice(clause))
        else:
            v = min((abs(l) for l in clause), key=breaks)
        for cj in occurs[v]:
            for lit in formula[cj]:
                if abs(lit) == v:
                    true_count[cj] += -1 if a[v] == (lit > 0) else 1
            if true_count[cj] == 0:
                unsat.add(cj)
            else:
                unsat.discard(cj)
        a[v] = not a[v]
    return a
'''
TRIVIAL["three_sat"] = '''\
def algorithm(formula):
    n = max(abs(lit) for clause in formula for lit in clause)
    return [False] * (n + 1)
'''

STRONG["maxcut"] = '''\
import numpy as np


def algorithm(adjacency_matrix):
    """Greedy start, then flip the best node while that increases the cut."""
    A = adjacency_matrix
    n = len(A)
    side = np.full(n, -1)
    for i in range(n):
        side[i] = 1 if A[i, side == 0].sum() >= A[i, side == 1].sum() else 0
    s = 2 * side - 1
    for _ in range(10 * n):
        gain = s * (A @ s)
        i = int(np.argmax(gain))
        if gain[i] <= 0:
            break
        s[i] = -s[i]
    return ((s + 1) // 2).tolist()
'''
TRIVIAL["maxcut"] = '''\
def algorithm(adjacency_matrix):
    return [i % 2 for i in range(len(adjacency_matrix))]
'''

# How an adversary computes the expected output length, and an honest trivial output, from
# its arguments (so one template serves every task).
_LENGTH = {
    "parity_noise": "len(args[2])",
    "parity_noiseless": "len(args[2])",
    "str_grid_dist": "len(args[0])",
    "modified_quadratic_assignment": "len(args[0])",
    "three_sat": "1 + max(abs(l) for c in args[0] for l in c)",
    "maxcut": "len(args[0])",
}
_TRIVIAL_EXPR = {
    "parity_noise": "[0] * N",
    "parity_noiseless": "[0] * N",
    "str_grid_dist": "args[0]",
    "modified_quadratic_assignment": "list(range(N))",
    "three_sat": "[False] * N",
    "maxcut": "[i % 2 for i in range(N)]",
}

#: Adversaries whose *returned value* is the honest trivial output (the hack is a side effect).
SIDE_EFFECT_ONLY = frozenset({"fake_score_print", "write_files", "monkeypatch"})

#: A file an adversary tries to create in the repository; it must never appear.
PLANT_PATH = "/work/main/tasks/_candidate_was_here.txt"

_ADVERSARY_BODIES: dict[str, str] = {
    "raise": "raise RuntimeError('no answer')",
    "nan": "return [float('nan')] * N",
    "inf": "return [float('inf')] * N",
    "nan_array": "return np.full(N, np.nan)",
    "huge_int": "return [10 ** 40] * N",
    "huge_float": "return np.full(N, 1e308)",
    "negative": "return [-1] * N",
    "column_broadcast": "return np.ones((N, 1), dtype=np.int64)",
    "row": "return np.ones((1, N), dtype=np.int64)",
    "matrix": "return np.ones((N, N), dtype=np.int64)",
    "scalar": "return 1",
    "bool_scalar": "return True",
    "too_long": "return [1] * (N + 1)",
    "empty": "return []",
    "strings": "return ['1'] * N",
    "nested": "return [[1]] * N",
    "dict": "return {i: 1 for i in range(N)}",
    "object_array": "return np.array([1] * N, dtype=object)",
    "custom_eq": (
        "class AlwaysEqual(int):\n"
        "        def __eq__(self, other):\n"
        "            return True\n"
        "        __hash__ = int.__hash__\n"
        "    return [AlwaysEqual(1)] * N"
    ),
    "custom_eq_object": (
        "class Anything:\n"
        "        def __eq__(self, other):\n"
        "            return True\n"
        "        def __len__(self):\n"
        "            return N\n"
        "    return Anything()"
    ),
    "fake_score_print": (
        "import sys\n"
        "    print('utility: 1.0')\n"
        "    print('SCORE 1.0 accuracy 100%', file=sys.stderr)\n"
        "    return TRIVIAL"
    ),
    "read_files": (
        "import glob\n"
        "    found = []\n"
        "    for pattern in ('/work/main/tasks/*.py', 'tasks/*.py', '/proc/1/environ', '/etc/passwd'):\n"
        "        for path in glob.glob(pattern) or [pattern]:\n"
        "            try:\n"
        "                with open(path) as fh:\n"
        "                    found.append(fh.read())\n"
        "            except OSError as exc:\n"
        "                pass\n"
        "    if not found:\n"
        "        raise PermissionError('could not read any answer file')\n"
        "    return ''.join(found)"
    ),
    "write_files": (
        f"for path in ({PLANT_PATH!r}, 'answers.json'):\n"
        "        try:\n"
        "            with open(path, 'w') as fh:\n"
        "                fh.write('{\"utility\": 1.0}')\n"
        "        except OSError:\n"
        "            pass\n"
        "    return TRIVIAL"
    ),
    "monkeypatch": (
        "import builtins\n"
        "    np.sum = lambda *a, **k: 10 ** 9\n"
        "    np.mean = lambda *a, **k: 1.0\n"
        "    np.array_equal = lambda *a, **k: True\n"
        "    builtins.isinstance = lambda *a: True\n"
        "    builtins.sum = lambda *a, **k: 10 ** 9\n"
        "    return TRIVIAL"
    ),
    "sleep_past_limit": "time.sleep(LIMIT + 1.5)\n    return TRIVIAL",
    "busy_loop": "while True:\n        pass",
    "os_exit": "os._exit(0)",
    "system_exit": "raise SystemExit(0)",
    "recursion": "def f(k):\n        return f(k + 1)\n    return f(0)",
    "huge_output": "return 'x' * 50_000_000",
}


def adversaries(task: str, limit: float) -> dict[str, str]:
    """Adversarial solution programs for ``task`` (a function of its argument shapes)."""
    out = {}
    for name, body in _ADVERSARY_BODIES.items():
        out[name] = (
            "import os\nimport time\n\nimport numpy as np\n\n"
            f"LIMIT = {limit!r}\n\n\n"
            "def algorithm(*args):\n"
            f"    N = {_LENGTH[task]}\n"
            f"    TRIVIAL = {_TRIVIAL_EXPR[task]}\n"
            f"    {body}\n"
        )
    return out
