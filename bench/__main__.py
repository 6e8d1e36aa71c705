"""Run benchmarks: ``python -m bench [NAME ...]``; prints BENCH lines, then a table for people."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench
from bench.harness import Figure, format_line

#: Benchmarks run only when named (``make bench-paper``): they take minutes.
NOT_DEFAULT = frozenset({"paper"})


def _modules(names: list[str]) -> list[str]:
    found = sorted(m.name[len("bench_") :] for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    if not names:
        return [n for n in found if n not in NOT_DEFAULT]
    unknown = [n for n in names if n not in found]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; available: {', '.join(found)}")
    return names


def main(argv: list[str]) -> int:
    figures: list[Figure] = []
    for name in _modules(argv):
        print(f"# running bench_{name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        for fig in module.run():
            figures.append(fig)
            print(format_line(fig), flush=True)
    print()
    width = max((len(f.name) for f in figures), default=10)
    print(f"{'figure':<{width}}  {'value':>12}  {'unit':<10} {'target':<12} met")
    for f in figures:
        target = f"{f.op} {f.target:g}" if f.op else "-"
        met = {True: "yes", False: "NO", None: "-"}[f.met]
        print(f"{f.name:<{width}}  {f.value:>12.4g}  {f.unit:<10} {target:<12} {met}  {f.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
