"""Tests of the SDK: Client, CLI commands, local runs, public API."""
