# The README's demo: the PyTorch digits example as a 2-rank local run, tracked in the embedded MLflow store, plotted.
##@ Demo
.PHONY: demo
demo: install-examples ## Train examples/pytorch-ddp.yaml locally (2 nodes, DDP on CPU), track it in MLflow, plot loss/accuracy
	@start=$$(date +%s); \
	$(BIN)/runyard run --local examples/pytorch-ddp.yaml --plot; rc=$$?; \
	echo "[demo] finished in $$(( $$(date +%s) - start ))s (runs and the MLflow store are under .runyard/)"; \
	exit $$rc
