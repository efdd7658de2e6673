# balkd-fairseq: a fresh machine needs `make demo` (the main job) and `make test` (the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install test test-fast demo bench bench-scale clean

install:
	@bash scripts/install.sh

# Tests run in parallel on every core (pytest-xdist); one file stays on one worker, so a file's module
# fixtures (a trained tiny model, a prepared corpus) are built once.
PYTEST_PARALLEL ?= -n auto --dist loadfile

test: install
	$(PY) -m pytest -q $(PYTEST_PARALLEL) tests

test-fast: install
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m "not slow" tests

demo: install
	bash examples/toy/run.sh

bench: install
	$(PY) benchmarks/bench_distill.py

bench-scale: install
	$(PY) benchmarks/bench_scale.py

clean:
	rm -rf $(VENV) build *.egg-info
