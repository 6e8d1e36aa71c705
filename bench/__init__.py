"""Benchmarks: `make bench` runs them all, `make bench-NAME` one (bench/bench_NAME.py)."""
