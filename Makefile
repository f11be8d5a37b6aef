# Entry points for a fresh checkout. `make test` and `make demo` build ./.venv first (idempotent).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup test lint demo env clean-venv

setup:
	@bash tools/setup_env.sh

lint: setup
	$(PY) -m ruff check .

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	bash tools/demo.sh

env:
	$(PY) -m ropevit_dense.env

clean-venv:
	rm -rf .venv
