"""`mgen bench text`: forward throughput (tokens/s) of each frozen text-encoder family.

For each preset family (UL2, ByT5, T5 as used by the audio model, Long-prompt MetaCLIP) the
encoder's forward pass is jit-compiled once (compile time reported, not timed), run once as a
warm-up, then timed as the median of a few runs; tokens/s = batch x length / median seconds.
Next to it: parameter counts, XLA's FLOPs of the compiled forward (blocks are a Python loop, so
cost_analysis counts every layer) and the achieved fraction of this process's matmul peak,
the ratio that stays meaningful on a busy or different machine.

Encoders run at their real widths in float32 on one device, with deterministic weights (0.02
sin of the index: throughput does not depend on the values). UL2's 32-layer, 4096-wide encoder
(~8.7B parameters, 35 GB in float32) does not fit a small shared host next to its activations,
so it runs `layers` of its 32 blocks at the real width; the JSON states the layer count and a
full-depth estimate (time scales with the number of blocks; the embedding lookup is
negligible).

    mgen bench text [--json=F] [--quick]
"""
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.benchmarks.matmul_peak import machine_info, matmul_peak, median_seconds
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.text.encoder_set import encoder_model
from mgen_jax.configs.registries import TEXT_ENCODER_KINDS

# name, family, preset, blocks run (None = all), batch, length (tokens per prompt).
# Lengths as Movie Gen uses them: UL2 and Long-prompt MetaCLIP see the whole prompt (256
# tokens), ByT5 only the quoted visual text (bytes), the audio model's T5 up to 512 tokens.
FULL = dict(encoders=(("ul2", "t5", "ul2", 2, 2, 256),
                      ("byt5-small", "t5", "byt5-small", None, 2, 128),
                      ("t5-base", "t5", "t5-base", None, 2, 512),
                      ("metaclip-h14-long", "clip", "metaclip-h14-long", None, 2, 256)),
            repeats=3, peak_sizes=(1024, 2048))
QUICK = dict(encoders=(("ul2", "t5", "tiny", 1, 2, 16),
                       ("byt5-small", "t5", "tiny", None, 2, 16),
                       ("t5-base", "t5", "tiny", None, 2, 32),
                       ("metaclip-h14-long", "clip", "tiny", None, 2, 32)),
             repeats=2, peak_sizes=(256,))


def _configs(family: str, preset: str, layers: int | None):
    """(full-depth preset config, benchmarked config: `layers` blocks of it, or all)."""
    full = TEXT_ENCODER_KINDS.load(family, "preset_config")(preset)
    cfg = full.copy_and_resolve_references()
    if layers is not None:
        cfg.num_layers = layers
    return full, cfg


def _deterministic_params(model: PureModel) -> dict:
    """Deterministic, bounded, non-constant weights (0.02 * sin of the element index), made on
    the device one leaf at a time: the throughput does not depend on the values, and unlike a
    random initialiser (threefry, seconds to compile per model) they compile in milliseconds."""
    def fill(shape, dtype, offset):
        i = jnp.arange(math.prod(shape), dtype=jnp.float32).reshape(shape) + offset
        return (0.02 * jnp.sin(i * 12.9898 + 78.233)).astype(dtype)
    fill = jax.jit(fill, static_argnums=(0, 1))
    leaves, treedef = jax.tree.flatten(model.abstract_params())
    return treedef.unflatten([fill(leaf.shape, leaf.dtype, float(n))
                              for n, leaf in enumerate(leaves)])


def _bench_one(name, family, preset, layers, batch, length, *, repeats, peak) -> dict:
    full, cfg = _configs(family, preset, layers)
    model = encoder_model(family, cfg)
    vocab = cfg.vocab_size
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(3, vocab, (batch, length)).astype(np.int32))
    mask = jnp.ones((batch, length), jnp.int32)

    def forward(params, ids, mask):
        out = model.bind(params)(ids, mask)
        pooled = TEXT_ENCODER_KINDS.entry(family).meta["pooled_output"]
        return out[0] if pooled else out  # the hidden states, [B, L, D]

    params = _deterministic_params(model)
    start = time.perf_counter()
    compiled = jax.jit(forward).lower(params, ids, mask).compile()
    compile_seconds = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", 0.0)) if cost else 0.0
    t = median_seconds(lambda: compiled(params, ids, mask), repeats=repeats, warmup=1)
    tokens = batch * length
    full_layers = int(full.num_layers)
    run_layers = int(cfg.num_layers)
    row = {
        "name": name, "family": family, "preset": preset, "dtype": "float32",
        "batch": batch, "length": length, "tokens": tokens,
        "layers": run_layers, "full_layers": full_layers,
        "width": int(cfg[TEXT_ENCODER_KINDS.entry(family).meta["width_key"]]),
        "num_params": model.num_params(),
        "full_num_params": encoder_model(family, full).num_params(),  # abstract: nothing allocated
        "compile_seconds": compile_seconds,
        "seconds": t["median"], "seconds_min": t["min"], "seconds_max": t["max"],
        "seconds_all": t["all"], "cpu_seconds": t["cpu_median"],
        "tokens_per_s": tokens / t["median"],
        "xla_flops": xla_flops,
        "achieved_flops_per_s": xla_flops / t["median"],
        "fraction_of_matmul_peak": xla_flops / t["median"] / peak,
    }
    if run_layers != full_layers:
        row["estimated_full_depth_tokens_per_s"] = row["tokens_per_s"] * run_layers / full_layers
    return row


def _summary_line(row: dict) -> str:
    layers = (f"{row['layers']}/{row['full_layers']} layers" if row["layers"] != row["full_layers"]
              else f"{row['layers']} layers")
    line = (f"{row['batch']}x{row['length']} tokens, {layers}, width {row['width']}, "
            f"{row['num_params'] / 1e6:,.1f}M params (full {row['full_num_params'] / 1e6:,.1f}M): "
            f"{row['tokens_per_s']:,.0f} tokens/s, {row['fraction_of_matmul_peak']:.2f} of "
            "matmul peak")
    if "estimated_full_depth_tokens_per_s" in row:
        line += f", full depth ~{row['estimated_full_depth_tokens_per_s']:,.0f} tokens/s"
    return line


def text_bench(quick: bool = False) -> dict:
    shape = QUICK if quick else FULL
    machine = machine_info()
    peak = matmul_peak(shape["peak_sizes"], repeats=shape["repeats"] + 2)
    rows = [_bench_one(*spec, repeats=shape["repeats"], peak=peak["flops_per_s"])
            for spec in shape["encoders"]]
    return {
        "benchmark": "text", "quick": quick,
        "summary": {row["name"]: _summary_line(row) for row in rows},
        "machine": machine,
        "matmul_peak": peak,
        "method": "jit-compiled forward (ids, mask) -> last hidden states, float32, "
                  "deterministic weights (0.02 sin(index)), one device; one warm-up run "
                  "excluded; median of `repeats` timed runs; tokens/s = batch*length/median "
                  "seconds; XLA flops from cost_analysis()",
        "repeats": shape["repeats"],
        "encoders": rows,
    }
