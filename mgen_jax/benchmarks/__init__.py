"""Benchmarks (compile-time memory analyses and timings) reported by `mgen bench`."""
