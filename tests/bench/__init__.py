"""Benchmarks (not tests): `python -m tests.bench <name> [options]`; see `__main__.py`."""
