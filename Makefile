# STOP — the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint docs bench bench-paper sandbox-deps report-deps live-deps pg-deps bench-pg clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# bubblewrap is an isolation layer of the sandbox; it is installed when missing and the
# machine allows it (root + Debian). The sandbox still works without it (Landlock + seccomp).
sandbox-deps:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null 2>&1 ; } \
	  || echo "note: bubblewrap unavailable; the sandbox will use Landlock + seccomp only (its tests fail under STOP_REQUIRE, as in CI)" >&2

# Headless Chromium renders the HTML report in its test (Debian's package; no browser download).
report-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 ; } \
	  || echo "note: chromium unavailable; the browser tests will be skipped (and fail under STOP_REQUIRE, as in CI)" >&2

# tmux drives `stop watch` in a real terminal in its test (Debian's package).
live-deps:
	@command -v tmux >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux) >/dev/null 2>&1 ; } \
	  || echo "note: tmux unavailable; the terminal test of stop watch will be skipped (and fail under STOP_REQUIRE, as in CI)" >&2

# Debian's PostgreSQL server binaries: the PostgreSQL store's tests start a throwaway server
# from them (initdb + pg_ctl on 127.0.0.1). Under STOP_REQUIRE=postgres (CI) those tests fail
# when the server cannot start.
pg-deps:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql) >/dev/null 2>&1 ; } \
	  || echo "note: postgresql unavailable; the PostgreSQL store's tests will be skipped" >&2

# The main job: the STOP loop with the built-in offline model (no key, no network), 2 generations
# with small budgets, then the lineage of the run it recorded.
run: $(STAMP) sandbox-deps
	$(BIN)/stop self-improve --config configs/quickstart.json --store runs/stop.db
	$(BIN)/stop lineage latest --store runs/stop.db

# Generated documentation (a test checks that it is current).
docs: $(STAMP)
	$(BIN)/python -m events.catalogue > docs/events.md

# The lint and type gate: ruff (lint + format check) and mypy, configured in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint sandbox-deps report-deps live-deps pg-deps
	$(BIN)/python -m pytest -q

bench: $(STAMP) sandbox-deps pg-deps
	$(BIN)/python -m bench

bench-pg: $(STAMP) sandbox-deps pg-deps
	$(BIN)/python -m bench pg

# Not part of `make bench`: each task's seed in-process vs one sandboxed batch.
bench-paper: $(STAMP) sandbox-deps
	$(BIN)/python -m bench paper

bench-%: $(STAMP) sandbox-deps
	$(BIN)/python -m bench $*

clean:
	rm -rf $(VENV) runs
