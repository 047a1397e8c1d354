"""Benchmark: the Triton server against the eager PyTorch baseline (see bench/README.md)."""
