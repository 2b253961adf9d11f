"""Benchmarks behind `pulsecast bench`."""
