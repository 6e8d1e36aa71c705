# STOP — the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench sandbox-deps clean

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
	  || echo "note: bubblewrap unavailable; the sandbox will use Landlock + seccomp only" >&2

run: $(STAMP) sandbox-deps
	$(BIN)/stop --help
	$(BIN)/python -m cli.demo

test: $(STAMP) sandbox-deps
	$(BIN)/python -m pytest -q

bench: $(STAMP) sandbox-deps
	$(BIN)/python -m bench

bench-%: $(STAMP) sandbox-deps
	$(BIN)/python -m bench $*

clean:
	rm -rf $(VENV) runs
