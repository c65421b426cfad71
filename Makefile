# CI runs `make test` verbatim (see .ci/run); README.md documents `make demo` and `make test`.
PY ?= .venv/bin/python
SHELL := /bin/bash

.PHONY: bootstrap servers lint unit test demo demo-embedded bench clean

bootstrap:            ## create .venv and install pymirror with its dev extra
	scripts/bootstrap.sh

servers: bootstrap    ## install every real server the integration tests use (cached)
	scripts/install-servers.sh

lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	.venv/bin/lint-imports

unit: bootstrap
	$(PY) -m pytest -m unit

test: servers lint    ## the full suite: lint, unit and integration tests on real servers
	$(PY) -m pytest --durations=30

# The demo needs the venv and the sandbox's API server, which `pymirror sandbox up` builds
# into ${PYMIRROR_CACHE:-~/.cache/pymirror}/kube when missing (progress shown); no LocalStack.
demo: bootstrap       ## the main job: the whole product on one machine (docs/demo.md)
	.venv/bin/pymirror demo

demo-embedded: bootstrap  ## the in-process demo: one queue split on an embedded moto
	.venv/bin/pymirror demo --embedded

bench: servers
	for b in benchmarks/*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .artifacts
