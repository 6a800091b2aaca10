"""Experiment-tracking plugin of the operator (MLflow run lifecycle, tracker env for pods)."""
