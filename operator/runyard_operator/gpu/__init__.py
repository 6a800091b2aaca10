"""Per-run GPU metrics: sources (DCGM exporter, Prometheus, node agent), attribution, accounting, sinks and the plugin.

The NVML reader and the utilisation integrator live in the SDK (`runyard.gpu`), shared with local runs.
"""
