"""Runyard operator: reconciles TrainingRuns into Indexed Jobs, Services and tracked runs."""

__version__ = "0.1.0"
