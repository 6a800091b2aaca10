# Benchmarks (included by the main Makefile): the operator as a real process against the local control plane.
##@ Benchmarks
.PHONY: bench
bench: install binaries ## Full benchmark (NODES fake GPU nodes, default 100), py-spy profiles: appends to bench/RESULTS.md
	$(PYTHON) bench/run.py --profile --nodes $(or $(BENCH_NODES),100)

.PHONY: bench-quick
bench-quick: install binaries ## Everyday benchmark, under 5 minutes
	$(PYTHON) bench/run.py --quick --nodes $(or $(BENCH_NODES),20)
