# GPU metrics targets (included by the main Makefile): the node agent, the GPU tests and the real-hardware NVML check.
GPU_AGENT_PORT ?= 9400
GPU_AGENT_SOCKET ?= /var/lib/kubelet/pod-resources/kubelet.sock
GPU_CHECK_ARGS ?=

##@ GPU metrics
.PHONY: gpu-agent
gpu-agent: install ## Run the GPU node agent locally (NVML + PodResources -> DCGM format on :$(GPU_AGENT_PORT)/metrics)
	$(PYTHON) -m runyard_operator.gpu.agent --port $(GPU_AGENT_PORT) --pod-resources-socket $(GPU_AGENT_SOCKET)

.PHONY: test-gpu
test-gpu: install ## GPU metrics tests: unit (no GPU needed) and the operator integration test with MLflow
	$(BIN)/pytest -q tests/unit/gpu
	$(BIN)/pytest -q tests/cluster/test_gpu_metrics.py

.PHONY: lint-gpu
lint-gpu: install ## ruff + strict mypy on the GPU metrics code
	$(BIN)/ruff check operator/runyard_operator/gpu bench/gpu tests/unit/gpu tests/cluster/test_gpu_metrics.py
	$(BIN)/ruff format --check operator/runyard_operator/gpu bench/gpu tests/unit/gpu tests/cluster/test_gpu_metrics.py
	$(BIN)/mypy operator/runyard_operator/gpu

.PHONY: gpu-check
gpu-check: ## On an NVIDIA GPU host (torch + nvidia-ml-py): NVML check idle/load/memory/idle (GPU_CHECK_ARGS=--out x.jsonl)
	PYTHONPATH=sdk python3 bench/gpu/check_nvml.py $(GPU_CHECK_ARGS)

.PHONY: gpu-check-replay
gpu-check-replay: ## Re-check a saved NVML trace without a GPU (TRACE=path/to/nvml_trace.jsonl)
	PYTHONPATH=sdk $(PYTHON) bench/gpu/check_nvml.py --replay $(TRACE)
