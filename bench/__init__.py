"""Benchmarks (not tests): ``python -m bench.load`` measures the align service under load."""
