"""Tests of the Helm chart helm/runyard that need only the helm binary (no cluster)."""
