"""Runyard SDK: TrainingRun API models, pure builders, client and CLI."""

__version__ = "0.1.0"
