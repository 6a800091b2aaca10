"""Tests of run artifacts: store layout, manifests, checkpoints, the sync sidecar, resume and the operator plugin."""
