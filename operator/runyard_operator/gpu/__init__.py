"""Per-run GPU metrics: sources (DCGM exporter, Prometheus, node agent), attribution, accounting, sinks and the plugin.

Kept import-free so `runyard_operator.gpu.nvml` loads on a GPU host that has only nvidia-ml-py and the stdlib.
"""
