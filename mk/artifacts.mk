# Artifact targets (included by the main Makefile): the S3-compatible server the artifact tests start on 127.0.0.1,
# built by hack/build-s3-server.sh from the Go module proxy into $(RUNYARD_CACHE) when missing.
VERSITYGW_VERSION ?= v1.8.0
VERSITYGW := $(RUNYARD_CACHE)/bin/versitygw-$(VERSITYGW_VERSION)/versitygw

$(VERSITYGW):
	VERSITYGW_VERSION=$(VERSITYGW_VERSION) hack/build-s3-server.sh

##@ Artifacts
.PHONY: s3-server
s3-server: $(VERSITYGW) ## Build versitygw (S3 server for the artifact tests) into the cache

.PHONY: test-artifacts
test-artifacts: install $(VERSITYGW) ## Artifact tests: store, manifests, sync sidecar, resume, plugin, cluster
	$(BIN)/pytest -q tests/unit/artifacts
	$(BIN)/pytest -q tests/cluster/test_artifacts.py
