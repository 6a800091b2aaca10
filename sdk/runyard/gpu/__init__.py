"""GPU readings shared by the node agent and local runs: the NVML reader and the utilisation integrator.

Kept import-free (like `runyard` itself) so `runyard.gpu.nvml` loads on a GPU host with only nvidia-ml-py and the
stdlib (bench/gpu/check_nvml.py).
"""
