"""Benchmarks: `make bench` writes bench/results/*.json and bench/results/summary.md."""
