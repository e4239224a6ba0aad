# kruise-mesh: every target installs what is missing first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Only `make run KUBECONFIG=<file>` on the command line targets a real cluster; a KUBECONFIG
# exported in the shell does not, so a plain `make run` always uses the sandbox.
KUBE_ARG := $(if $(filter command line,$(origin KUBECONFIG)),--kubeconfig $(KUBECONFIG),)

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the project with its dev tools (only when missing)

.PHONY: run
run: $(STAMP) ## start sandbox, gateway and services and walk through them (KUBECONFIG=<file> [WEBHOOK_HOST=<ip>] for a real cluster)
	$(PY) -m services.cli demo $(KUBE_ARG) $(if $(WEBHOOK_HOST),--webhook-host $(WEBHOOK_HOST),)

.PHONY: gen
gen: $(STAMP) ## regenerate gen/ from protos/
	$(PY) scripts/gen_protos.py

.PHONY: check
check: $(STAMP) ## ruff, ruff format, mypy, import contracts and generated-code drift
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) scripts/gen_protos.py --check

.PHONY: test
test: $(STAMP) ## the whole suite: unit, service, sandbox, gateway and e2e
	$(PY) -m pytest -q

.PHONY: unit
unit: $(STAMP) ## pure-function tests only
	$(PY) -m pytest -q tests/unit

.PHONY: e2e
e2e: $(STAMP) ## end-to-end tests: every process on loopback against the sandbox
	$(PY) -m pytest -q tests/e2e

.PHONY: bench
bench: $(STAMP) ## benchmarks; each prints a table (bounded, loopback only)
	$(PY) -m bench

.PHONY: fmt
fmt: $(STAMP) ## format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: help
help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"
