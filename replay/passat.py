"""Pass rate of self-repair against programs and tokens (pass@t), by bootstrap over recorded trees.

As in the study's estimator: for each (n_p', n_fr') up to the recorded (n_p, n_fr), ``resamples``
draws with replacement from each problem's frozen tree: n_p' initial programs, then — only when
none of them passes (the workflow stops a problem at its first pass) — n_fr' repairs of each drawn
failing program. A problem passes if any drawn program passes; its tokens are the generated tokens
(program, or explanation plus program for repairs) of the drawn programs. Reported: the mean over
resamples of the pass rate over problems and of the mean tokens per problem (with the std over
resamples, which understates the true variance: every resample comes from one tree per problem).

The baseline is plain i.i.d. sampling at the same budget: k = n_p'·(1 + n_fr') draws of initial
programs only. Resampling uses ``numpy.random.Generator(PCG64(seed))``, a fresh generator per row,
so every number is a pure function of the log, the seed and the resample count.

A failing program with no recorded repairs (its problem was solved by another sample, in a run
without ``--full-tree``) contributes no repairs to a draw; ``incomplete`` counts such problems.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from events import Event
from events.stop_events import RepairProblemStarted, RepairProgram, UtilityEvaluated, UtilityRequested
from outcome import UsageError
from store.base import EventStore

__all__ = ("Estimate", "Node", "Tree", "estimate", "load_trees", "passat_table", "plot_passat")


@dataclass(frozen=True)
class Node:
    passed: bool
    tokens: int


@dataclass(frozen=True)
class Tree:
    """One problem's frozen tree: ``repairs[i]`` are the repairs of ``samples[i]``."""

    problem: str
    n_p: int
    n_fr: int
    samples: tuple[Node, ...]
    repairs: tuple[tuple[Node, ...], ...]
    unchecked: int = 0

    @property
    def incomplete(self) -> bool:
        """Some failing sample has fewer recorded repairs than n_fr."""
        return any(not s.passed and len(r) < self.n_fr for s, r in zip(self.samples, self.repairs, strict=True))


@dataclass(frozen=True)
class Estimate:
    n_p: int
    n_fr: int
    pass_rate: float
    pass_std: float
    tokens: float
    tokens_std: float
    programs: float


def _index(key: str) -> int:
    try:
        return int(key.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return 0


async def load_trees(store: EventStore, run_id: str) -> list[Tree]:
    """The repair trees of a ``stop repair`` run, problems in the order the run started them."""
    events = await store.read(
        run_id, types={"repair.problem", "repair.program", "utility.requested", "utility.evaluated"}
    )
    kids: dict[str | None, list[Event]] = {}
    for ev in events:
        kids.setdefault(ev.causation_id, []).append(ev)

    unchecked = 0

    def node(program: Event) -> Node:
        nonlocal unchecked
        for req in kids.get(program.id, []):
            if req.type == UtilityRequested.TYPE and req.key == "check":
                for res in kids.get(req.id, []):
                    if res.type == UtilityEvaluated.TYPE:
                        return Node(res.decode(UtilityEvaluated).utility >= 1.0, program.decode(RepairProgram).tokens)
        unchecked += 1
        return Node(False, program.decode(RepairProgram).tokens)

    def programs(parent: Event, kind: str) -> list[Event]:
        found = [
            e for e in kids.get(parent.id, []) if e.type == RepairProgram.TYPE and e.decode(RepairProgram).kind == kind
        ]
        return sorted(found, key=lambda e: _index(e.key))

    trees = []
    for pev in (e for e in events if e.type == RepairProblemStarted.TYPE):
        unchecked = 0
        samples = programs(pev, "sample")
        nodes = tuple(node(s) for s in samples)
        repairs = tuple(tuple(node(r) for r in programs(s, "repair")) for s in samples)
        started = pev.decode(RepairProblemStarted)
        trees.append(Tree(started.problem, started.n_p, started.n_fr, nodes, repairs, unchecked))
    if not trees:
        raise UsageError(f"run {run_id} has no repair trees (is it a `stop repair` run?)")
    return trees


def estimate(trees: list[Tree], n_p: int, n_fr: int, *, resamples: int = 1000, seed: int = 2023) -> Estimate:
    """Bootstrap estimate for drawing ``n_p`` programs and ``n_fr`` repairs per failing one."""
    if n_p < 1 or n_fr < 0 or resamples < 1:
        raise ValueError("need n_p >= 1, n_fr >= 0 and resamples >= 1")
    rng = np.random.Generator(np.random.PCG64(seed))
    R, P = resamples, len(trees)
    passed = np.zeros((R, P), dtype=bool)
    tokens = np.zeros((R, P), dtype=np.float64)
    drawn = np.zeros((R, P), dtype=np.float64)
    for j, tree in enumerate(trees):
        n_samples = len(tree.samples)
        if n_samples == 0:  # the sampling call failed: nothing to draw, the problem fails
            continue
        s_pass = np.array([s.passed for s in tree.samples], dtype=bool)
        s_tok = np.array([s.tokens for s in tree.samples], dtype=np.float64)
        idx = rng.integers(0, n_samples, size=(R, n_p))
        p0 = np.asarray(s_pass[idx].any(axis=1))
        tok = s_tok[idx].sum(axis=1)
        count = np.full(R, float(n_p))
        ok = p0
        if n_fr > 0:
            sizes = np.array([len(r) for r in tree.repairs], dtype=np.int64)
            width = max(int(sizes.max()), 1)
            r_pass = np.zeros((n_samples, width), dtype=bool)
            r_tok = np.zeros((n_samples, width), dtype=np.float64)
            for i, reps in enumerate(tree.repairs):
                for k, r in enumerate(reps):
                    r_pass[i, k], r_tok[i, k] = r.passed, r.tokens
            u = rng.random((R, n_p, n_fr))
            size = sizes[idx][..., None]  # (R, n_p, 1): the pool of each drawn program's repairs
            ridx = np.minimum(np.floor(u * size), np.maximum(size - 1, 0)).astype(np.int64)
            valid = (size > 0) & ~p0[:, None, None]
            valid = np.broadcast_to(valid, ridx.shape)
            rows = np.broadcast_to(idx[..., None], ridx.shape)
            ok = p0 | (r_pass[rows, ridx] & valid).any(axis=(1, 2))
            tok = tok + np.where(valid, r_tok[rows, ridx], 0.0).sum(axis=(1, 2))
            count = count + valid.sum(axis=(1, 2))
        passed[:, j] = ok
        tokens[:, j] = tok
        drawn[:, j] = count
    rate = passed.mean(axis=1)
    mean_tokens = tokens.mean(axis=1)
    return Estimate(
        n_p,
        n_fr,
        float(rate.mean()),
        float(rate.std()),
        float(mean_tokens.mean()),
        float(mean_tokens.std()),
        float(drawn.mean()),
    )


def passat_table(trees: list[Tree], *, resamples: int = 1000, seed: int = 2023) -> dict[str, Any]:
    """Every (n_p', n_fr') up to the recorded sizes, each with its i.i.d. baseline at k programs."""
    n_p = max(t.n_p for t in trees)
    n_fr = max(t.n_fr for t in trees)
    baseline: dict[int, Estimate] = {}

    def iid(k: int) -> Estimate:
        if k not in baseline:
            baseline[k] = estimate(trees, k, 0, resamples=resamples, seed=seed)
        return baseline[k]

    rows = []
    for a in range(1, n_p + 1):
        for b in range(n_fr + 1):
            est = estimate(trees, a, b, resamples=resamples, seed=seed)
            k = a * (1 + b)
            base = iid(k)
            rows.append(
                {
                    **asdict(est),
                    "k": k,
                    "iid_pass_rate": base.pass_rate,
                    "iid_tokens": base.tokens,
                    "ratio": (est.pass_rate / base.pass_rate) if base.pass_rate > 0 else None,
                }
            )
    for k in range(1, n_p * (1 + n_fr) + 1):
        iid(k)
    return {
        "problems": len(trees),
        "n_p": n_p,
        "n_fr": n_fr,
        "resamples": resamples,
        "seed": seed,
        "incomplete": sum(1 for t in trees if t.incomplete),
        "unchecked": sum(t.unchecked for t in trees),
        "rows": rows,
        "baseline": [{**asdict(baseline[k]), "k": k} for k in sorted(baseline)],
    }


def plot_passat(table: dict[str, Any], path: str, *, title: str = "") -> None:
    """Two panels: pass rate against programs (k) and against mean generated tokens (pass@t)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("--plot needs matplotlib (pip install matplotlib)") from e
    fig, (ax_k, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    base = table["baseline"]
    for ax, x in ((ax_k, "k"), (ax_t, "tokens")):
        ax.plot([b[x] for b in base], [b["pass_rate"] for b in base], "k--", marker=".", label="i.i.d. sampling")
        for n_fr in range(1, table["n_fr"] + 1):
            rows = [r for r in table["rows"] if r["n_fr"] == n_fr]
            ax.plot([r[x] for r in rows], [r["pass_rate"] for r in rows], marker="o", label=f"repair, n_fr={n_fr}")
        ax.set_ylabel("pass rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    ax_k.set_xlabel("programs k = n_p(1 + n_fr)")
    ax_t.set_xlabel("mean generated tokens per problem")
    ax_t.legend(loc="lower right", fontsize=8)
    fig.suptitle(
        title or f"self-repair: {table['problems']} problems, {table['resamples']} resamples (seed {table['seed']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
