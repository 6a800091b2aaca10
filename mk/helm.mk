# Helm chart targets (included by the main Makefile): lint and render every ci/ scenario with the pinned helm,
# which hack/build-binaries.sh builds from the Go module proxy into $(RUNYARD_CACHE) when missing.
HELM_VERSION ?= v3.21.4
HELM         := $(RUNYARD_CACHE)/bin/helm-$(HELM_VERSION)/helm
CHART        := helm/runyard
CHART_SCENARIOS := $(sort $(wildcard $(CHART)/ci/*-values.yaml))

$(HELM):
	HELM_VERSION=$(HELM_VERSION) hack/build-binaries.sh helm

##@ Helm
.PHONY: helm-lint
helm-lint: $(HELM) ## helm lint --strict and helm template the chart with every helm/runyard/ci/*-values.yaml
	@set -e; for f in $(CHART_SCENARIOS); do \
	  echo "==> $$f"; \
	  $(HELM) lint --strict $(CHART) -f $$f; \
	  $(HELM) template runyard $(CHART) --namespace runyard-system -f $$f >/dev/null; \
	done

.PHONY: helm-template
helm-template: $(HELM) ## Print the rendered chart (VALUES=helm/runyard/ci/<x>-values.yaml for a scenario)
	@$(HELM) template runyard $(CHART) --namespace runyard-system $(if $(VALUES),-f $(VALUES))

.PHONY: helm-test
helm-test: install $(HELM) ## Golden render tests, then the chart on the local control plane (tests/e2e/test_helm.py)
	$(BIN)/pytest -q tests/unit/helm
	$(BIN)/pytest -q tests/e2e/test_helm.py
