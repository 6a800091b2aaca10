"""Artifacts plugin: store defaults for pods, manifests summarised into status.artifacts, resume and clean-up."""
