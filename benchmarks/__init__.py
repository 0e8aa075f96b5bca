"""Benchmarks of the repository, run from its root (``python -m benchmarks.bench``)."""
