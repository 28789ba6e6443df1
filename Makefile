# carlib: `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= default
TEST_WORKERS ?= auto
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-12)
# setup installs these requirements apart from the rest, and first what both halves depend on
TORCH_HALF := torch|torchvision|torch-pruning
COMMON_DEPS := $(shell grep -E '^numpy==' requirements.txt) pillow jinja2 markupsafe typing-extensions

.PHONY: help setup chromium test test-fast test-faults notebooks reproduce precompute report bench clean-results

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## create .venv and install everything into it (quick when done)
	@$(MAKE) --no-print-directory -j2 $(STAMP) chromium

chromium: ## headless Chromium for the browser tests (Debian: apt-get install chromium, when missing)
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: apt-get could not install chromium; the browser tests will be skipped"; \
	else echo "note: no Chromium (install it, or set CARLIB_CHROMIUM); the browser tests will be skipped"; fi

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# requirements.txt in two halves installed at once (torch's, the rest's): twice as fast on
	@# two cores. What both halves need is installed first, so no file is written twice.
	$(BIN)/python -m pip install -q $(COMMON_DEPS)
	grep -E '^($(TORCH_HALF))==' requirements.txt > $(VENV)/requirements-torch.txt
	grep -vE '^($(TORCH_HALF))==' requirements.txt > $(VENV)/requirements-rest.txt
	$(BIN)/python -m pip install -q -r $(VENV)/requirements-torch.txt & torch=$$!; \
	  $(BIN)/python -m pip install -q -r $(VENV)/requirements-rest.txt; rest=$$?; \
	  wait $$torch && exit $$rest
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	rm -f $(VENV)/.installed-* && touch $@

test: setup ## run the test suite and the notebook regression tests (smoke profile) [TEST_WORKERS=auto]
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder tests
	env -u PYTHONDONTWRITEBYTECODE CARLIB_PROFILE=smoke CARLIB_PROGRESS=0 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --nbval --nbval-sanitize-with notebooks/sanitize.cfg notebooks/ -p no:cacheprovider

test-fast: setup ## run the unit tests and carlib's docstring examples (no notebooks)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --doctest-modules carlib tests

test-faults: setup ## every fault-injection trial: greedy runs and ranks killed with SIGKILL, resumed
	$(BIN)/python -m pytest -q --run-faults tests/test_faults.py tests/test_distributed.py

reproduce: setup ## regenerate every figure: make reproduce [PROFILE=default|full|imagenet|paper|smoke] [COMPUTE=1] [NOTEBOOKS=02,03]
	$(BIN)/python -m carlib.analysis.reproduce --profile $(PROFILE) $(if $(COMPUTE),--compute) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS))

precompute: setup ## a long profile's tables ahead of the notebooks, resumable: make precompute PROFILE=full [STATUS=1] [LAYERS=conv2] [STEPS=replicates]
	$(BIN)/python -m carlib.analysis.precompute --profile $(PROFILE) $(if $(STATUS),--status) $(if $(LAYERS),--layers "$(LAYERS)") $(if $(STEPS),--steps "$(STEPS)")

report: setup ## one self-contained HTML page per profile: make report [PROFILE=...] -> report/<profile>/
	$(BIN)/python -m carlib.analysis.report --profile $(PROFILE)

bench: setup ## benchmark the CAR engine against the naive loop (bench/results/)
	$(BIN)/python bench/bench.py

clean-results: ## delete cached results and figures of PROFILE
	rm -rf results/$(PROFILE) figures/$(PROFILE)
