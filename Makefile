# The two commands of the README's quick start:
#   make run   set up .venv (once) and run the main job: `recsys benchmark` on ML-100k
#   make test  set up .venv (once) and run the default test suite
# Set-up is idempotent: scripts/setup_env.sh returns at once when nothing changed.

VENV := .venv
PY := $(VENV)/bin/python
OUTPUT ?= results/benchmark

.PHONY: setup run test test-slow bench clean

setup:
	@bash scripts/setup_env.sh

run: setup
	$(VENV)/bin/recsys benchmark --config experiments/ml-100k/benchmark.yaml --output $(OUTPUT)

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) scripts/bench_evaluate.py
	$(PY) scripts/bench_baselines.py

clean:
	rm -rf $(VENV) results .pytest_cache
