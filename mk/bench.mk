# Benchmarks (included by the main Makefile): the operator as a real process against the local control plane.
##@ Benchmarks
.PHONY: bench
bench: install binaries ## Full benchmark (NODES fake GPU nodes, default 100), py-spy profiles: appends to bench/RESULTS.md
	$(PYTHON) bench/run.py --profile --nodes $(or $(BENCH_NODES),100)
	hack/build-binaries.sh peer
	$(PYTHON) bench/peer.py --profile --nodes $(or $(BENCH_NODES),100)
	$(MAKE) bench-local

.PHONY: bench-peer
bench-peer: install binaries ## Runyard beside the Kubeflow training-operator v1.8.1 only (BENCH_QUICK=1: about 6 minutes)
	hack/build-binaries.sh peer
	$(PYTHON) bench/peer.py --nodes $(or $(BENCH_NODES),$(if $(BENCH_QUICK),20,100)) $(if $(BENCH_QUICK),--quick)

.PHONY: bench-quick
bench-quick: install binaries ## Everyday benchmark, under 5 minutes
	$(PYTHON) bench/run.py --quick --nodes $(or $(BENCH_NODES),20)

.PHONY: bench-local
bench-local: install-examples ## What tracking a local run costs: runyard run --local beside torchrun and MLflow by hand
	$(PYTHON) bench/local_run.py --runs $(or $(BENCH_RUNS),3)
