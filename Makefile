# shiftroute: `make demo` runs the walkthrough, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps lint format test unit demo bench clean

install: $(STAMP)

# The per-request path is compiled by Cython at install (setup.py): reinstall when its sources change.
# (A compiled module older than its source is not used: see src/shiftroute/accel.py.)
HOT_MODULES := $(shell sed -n 's/^ *"\(shiftroute\..*\)",$$/\1/p' src/shiftroute/accel_modules.py)
HOT_SOURCES := setup.py $(addprefix src/,$(addsuffix .py,$(subst .,/,$(HOT_MODULES)))) \
	$(wildcard src/shiftroute/*/*.pxd)

$(STAMP): pyproject.toml $(HOT_SOURCES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

system-deps:
	@./scripts/system-deps.sh

lint: install
	$(BIN)/ruff check src tests bench scripts setup.py
	$(BIN)/ruff format --check src tests bench scripts setup.py
	$(BIN)/mypy --strict src/shiftroute

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# pytest exits 5 when it collects nothing: that is a broken suite, not a pass.
test: install system-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# The seed walkthrough (docs/tutorial.md): pki, a "Hello" app, reencrypt/edge/passthrough routes, the router,
# one request per route, then curl commands until Ctrl-C. Needs only Python: `make demo DEMO_ARGS=--once`
# stops after the checks (exit 0 only if all passed); DEMO_ARGS="--keep" keeps the workspace.
demo: install
	$(BIN)/shiftroute demo $(DEMO_ARGS)

# `make bench BENCH_ARGS="--quick"` for a smoke run; `--only reencrypt-keepalive,...`, `--rounds N`: see
# `python -m bench --help`. A full run takes about 15 minutes and rewrites BENCHMARKS.md's tables.
bench: install system-deps
	$(BIN)/python -m pip install -q -r bench/requirements.txt
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
	find src/shiftroute \( -name '*.so' -o -name '*.c' \) -delete
