"""Unit tests: pure code only, no cluster."""
