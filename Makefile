# Runyard: the single entry point for building, testing and running the project. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY        ?= python3.11
VENV      := .venv
BIN       := $(VENV)/bin
PYTHON    := $(BIN)/python
KUBECONFIG_FILE := $(CURDIR)/.cluster/kubeconfig
NODES     ?= 4
REAL_NODES ?= 0
export RUNYARD_CACHE ?= $(HOME)/.cache/runyard

##@ Setup
.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements-dev.txt sdk/pyproject.toml operator/pyproject.toml
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -r requirements-dev.txt -e 'sdk[kube,tracking,artifacts,sweeps]' -e 'operator[agent]'
	@touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv with runyard + runyard-operator (editable) and the dev tools
	@command -v mpirun >/dev/null || hack/install-system-deps.sh

.PHONY: install-examples
install-examples: install ## Add the heavy optional extras (torch, scikit-learn, mpi4py, jax, xgboost, deepspeed) used by examples
	$(BIN)/pip install -q -e 'sdk[examples]'
	$(BIN)/pip install -q --no-build-isolation -e 'sdk[deepspeed]'

##@ Code
.PHONY: generate
generate: install ## Regenerate the CRD (and chart copy) from the pydantic models
	$(PYTHON) hack/generate.py
	$(PYTHON) hack/generate_chart.py

.PHONY: verify
verify: generate ## Regenerate everything and fail on any drift
	@git --no-pager diff --exit-code -- crds/ helm/ || (echo "generated files are out of date: run 'make generate' and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- crds/ helm/)" || (git status --porcelain -- crds/ helm/; echo "untracked generated files" >&2; exit 1)

.PHONY: lint
lint: install ## ruff (lint + format check), mypy --strict and import-linter
	$(BIN)/ruff check sdk operator tests hack bench examples
	$(BIN)/ruff format --check sdk operator tests hack bench examples
	$(BIN)/mypy sdk/runyard operator/runyard_operator
	$(BIN)/lint-imports

.PHONY: fmt
fmt: install ## Format the code with ruff
	$(BIN)/ruff check --fix sdk operator tests hack bench examples
	$(BIN)/ruff format sdk operator tests hack bench examples

##@ Test
.PHONY: test-unit
test-unit: install ## Fast tests: no cluster needed
	$(BIN)/pytest -m "not cluster" -q || [ $$? -eq 5 ]

.PHONY: test-cluster
test-cluster: install binaries images ## Tests against the local control plane (started on demand)
	$(BIN)/pytest -m cluster -q || [ $$? -eq 5 ]

.PHONY: test
test: install binaries images ## Everything: lint, verify, unit and cluster tests (with the real node)
	$(MAKE) lint
	$(MAKE) verify
	hack/test.sh

.PHONY: chaos
chaos: install binaries images ## The full chaos and fuzz suite (make test runs its quick tier); table in docs/chaos.md
	RUNYARD_CHAOS_SCALE=full RUNYARD_CHAOS_REPORT=$(CURDIR)/.cluster-chaos.json $(BIN)/pytest -q tests/chaos -p no:cacheprovider

##@ Local cluster
.PHONY: binaries
binaries: ## Build etcd, kube-apiserver/controller-manager/scheduler, kwok, helm and the S3 test server (cached)
	hack/build-binaries.sh all
	hack/build-s3-server.sh

.PHONY: cluster-up
cluster-up: install binaries ## Start the local control plane with NODES fake GPU nodes, REAL_NODES=1 adds a real kubelet node
	@if [ "$(REAL_NODES)" != 0 ]; then $(MAKE) --no-print-directory images; fi
	NODES=$(NODES) REAL_NODES=$(REAL_NODES) $(PYTHON) hack/localcluster.py up

.PHONY: images
images: install ## Build the real node's images (pause, examples, runyard) from Debian packages; import them into a running node
	$(PYTHON) hack/images.py build
	$(PYTHON) hack/localcluster.py import-images

.PHONY: cluster-down
cluster-down: ## Stop exactly the processes cluster-up started and remove the state (the tests' kwok-only cluster too)
	@$(PY) hack/localcluster.py down
	@if [ -d "$(or $(RUNYARD_CLUSTER_DIR),$(CURDIR)/.cluster)-kwok" ]; then RUNYARD_CLUSTER_DIR="$(or $(RUNYARD_CLUSTER_DIR),$(CURDIR)/.cluster)-kwok" $(PY) hack/localcluster.py down; fi

.PHONY: cluster-status
cluster-status: ## Show the local cluster's processes and nodes
	@$(PY) hack/localcluster.py status

##@ Operator
.PHONY: operator
operator: install ## Run the operator in the foreground against .cluster/kubeconfig (after make cluster-up)
	KUBECONFIG=$(KUBECONFIG_FILE) $(BIN)/runyard-operator run --log-format plain

# Feature areas add their targets in mk/*.mk (tracking, gpu, artifacts, helm, bench, ...).
-include mk/*.mk
