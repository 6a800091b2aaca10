"""Unit tests of the GPU metrics plugin, its sources, the node agent and the NVML check."""
