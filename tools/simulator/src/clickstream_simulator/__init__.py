"""Clickstream simulator: reproducible shopper sessions for demos, tests and benchmarks."""
