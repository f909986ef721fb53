"""Benchmark scripts: run as `python benchmarks/<name>.py` or `python -m benchmarks.<name>`."""
