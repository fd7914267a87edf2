"""Attention memory vs sequence length, from XLA's compiled memory analysis (nothing is run).

For each backend and length, forward+backward of `sum(attention(q, k, v))` w.r.t. q, k, v is
compiled for the default platform and `memory_analysis()` is read: argument, output, temp
(scratch) and alias bytes, and a peak estimate = argument + output + temp - alias. Because only
compilation happens, plain attention at 16K tokens need not fit in memory. The growth ratio
between consecutive lengths shows the scaling: ~2x per doubling for a memory-linear kernel
("chunked"), ~4x for the plain one ("xla").

    python -m mgen_jax.benchmarks.attention_memory
"""
import json

import jax
import jax.numpy as jnp

from mgen_jax.models.attention import dot_product_attention


def _compiled_memory(backend: str, length: int, *, heads: int, head_dim: int, batch: int, dtype):
    def loss(q, k, v):
        return dot_product_attention(q, k, v, backend=backend).astype(jnp.float32).sum()

    x = jax.ShapeDtypeStruct((batch, length, heads, head_dim), dtype)
    compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).trace(x, x, x).lower().compile()
    return compiled.memory_analysis()


def attention_memory_vs_length(backends=("xla", "chunked"), lengths=(8192, 16384), *, heads: int = 8,
                               head_dim: int = 128, batch: int = 1, dtype=jnp.float32) -> list[dict]:
    """One row per (backend, length) with memory bytes and growth vs the previous length."""
    rows = []
    for backend in backends:
        previous = None
        for length in lengths:
            mem = _compiled_memory(backend, length, heads=heads, head_dim=head_dim, batch=batch,
                                   dtype=dtype)
            row = {
                "backend": backend, "length": length, "batch": batch, "heads": heads,
                "head_dim": head_dim, "dtype": jnp.dtype(dtype).name,
                "argument_bytes": mem.argument_size_in_bytes,
                "output_bytes": mem.output_size_in_bytes,
                "temp_bytes": mem.temp_size_in_bytes,
                "alias_bytes": mem.alias_size_in_bytes,
            }
            row["peak_bytes"] = (row["argument_bytes"] + row["output_bytes"] + row["temp_bytes"]
                                 - row["alias_bytes"])
            # Growth from the previous (shorter) length of the same backend; None for the first.
            row["peak_growth"] = row["peak_bytes"] / previous["peak_bytes"] if previous else None
            row["temp_growth"] = (row["temp_bytes"] / previous["temp_bytes"]
                                  if previous and previous["temp_bytes"] else None)
            rows.append(row)
            previous = row
    return rows


if __name__ == "__main__":
    for r in attention_memory_vs_length():
        print(json.dumps(r))
