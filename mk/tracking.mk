# Experiment-tracking targets (included by the main Makefile): serve the local MLflow store, run the tracking tests.
MLFLOW_STATE ?= $(CURDIR)/.runyard
MLFLOW_PORT  ?= 5000

##@ Tracking
.PHONY: mlflow-ui
mlflow-ui: install ## Serve the local runs' MLflow store (.runyard/mlflow.db) at http://127.0.0.1:$(MLFLOW_PORT)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(MLFLOW_STATE)/mlflow.db \
	  --default-artifact-root $(MLFLOW_STATE)/mlartifacts --host 127.0.0.1 --port $(MLFLOW_PORT)

.PHONY: mlflow-server
mlflow-server: install ## Run a throwaway MLflow tracking server (sqlite in /tmp) for the operator's tracking.mlflow
	@d=$$(mktemp -d); echo "store: $$d"; \
	$(BIN)/mlflow server --backend-store-uri sqlite:///$$d/mlflow.db --default-artifact-root $$d/artifacts \
	  --host 127.0.0.1 --port $(MLFLOW_PORT)

.PHONY: test-tracking
test-tracking: install ## Tracking tests: env goldens, local runs, offline W&B/Comet/TensorBoard, operator + mlflow server
	$(BIN)/pytest -q tests/unit/tracking tests/cluster/test_tracking.py
