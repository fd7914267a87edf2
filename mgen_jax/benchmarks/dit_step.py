"""`mgen bench dit`: one real DiT train step (forward + backward + AdamW) against the matmul peak.

The model is built through the real config path (schema defaults, DiT preset, overrides of the
shape), the step is `make_dit_train_step_on_embeddings` with the experiment's optimizer, jit'ed by
`jit_train_step` on a 1-device mesh with the state donated. Reported, all from one process:

  * the float32 matmul peak of this device (measured before and after the step; the higher one
    is the denominator, so a busy machine cannot flatter the ratio);
  * the steady-state step time (warm-up, then the median of several steps);
  * analytic model FLOPs (models/dit/flops.py: matmuls only, 3x forward) and XLA's compiled
    count (`cost_analysis()`; the bench model runs its layers unrolled, `scan_layers=False`,
    because XLA counts a scan body once);
  * achieved model FLOP/s and its ratio to the matmul peak;
  * attention memory vs sequence length (benchmarks/attention_memory.py), compile-time only;
  * the PyTorch peer (benchmarks/wan_peer.py): diffusers' WanTransformer3DModel of the same size
    on the same latents and text tokens, timed right after our step on the same cores, with its
    own analytic FLOPs (its FFN has 2 matrices to our 3), so step time and time per FLOP are
    both compared; {"available": False, ...} without torch / diffusers.

    mgen bench dit [--json=F] [--quick]
"""
import time

import jax
import numpy as np

from mgen_jax.benchmarks.matmul_peak import (machine_info, matmul_peak, median_seconds,
                                              step_time_fields)
from mgen_jax.benchmarks.wan_peer import peer_shape, wan_peer_bench
from mgen_jax.configs.schema import default_experiment
from mgen_jax.configs.tae import latent_frames, spatial_compression
from mgen_jax.configs.text import text_shapes, total_text_tokens
from mgen_jax.configs.validation import validate
from mgen_jax.models.builders import build_dit
from mgen_jax.models.dit.flops import dit_train_flops
from mgen_jax.models.text.text_inputs import cached_text_example, placeholder_nulls
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.training.dit_step import make_dit_train_step_on_embeddings
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.sharded_training import (batch_shardings, init_train_state,
                                                jit_train_step, to_device_batch,
                                                train_state_shardings)

# Mid-size: matmuls of width 1024 dominate (attention core is ~12% of the FLOPs at 1K tokens).
FULL = dict(
    dit=dict(width=1024, depth=4, num_heads=8, mlp_dim=2816, patch_size=(1, 2, 2)),
    data=dict(frames=32, height=256, width=256),   # latents (4, 32, 32) -> 4x16x16 = 1024 tokens
    batch_size=2, steps=5, warmup=2, matmul_sizes=(1024, 2048), matmul_repeats=7,
    attention=dict(lengths=(8192, 16384), heads=8, head_dim=128),
)
QUICK = dict(
    dit=dict(width=64, depth=2, num_heads=4, mlp_dim=128, patch_size=(1, 2, 2)),
    data=dict(frames=8, height=32, width=32),      # latents (1, 4, 4) -> 1x2x2 = 4 tokens
    batch_size=2, steps=2, warmup=1, matmul_sizes=(128, 256), matmul_repeats=3,
    attention=dict(lengths=(256, 512), heads=2, head_dim=16),
)


def bench_config(shape: dict):
    """The experiment config of the bench model: schema defaults + the shape overrides."""
    cfg = default_experiment()
    cfg.dit.update(shape["dit"])
    cfg.dit.scan_layers = False  # XLA's cost_analysis counts a scan body once
    cfg.data.update(shape["data"])
    cfg.mesh.update(data=1, fsdp=1, context=1, tensor=1)
    cfg.dit_train.batch_size = shape["batch_size"]
    return validate(cfg)


def _example_batch(cfg, batch_size: int, seed: int = 0) -> dict:
    s = spatial_compression(cfg.tae)
    latent = (batch_size, latent_frames(cfg.tae, cfg.data.frames), cfg.data.height // s,
              cfg.data.width // s, cfg.tae.z_channels)
    rng = np.random.default_rng(seed)
    return {
        "latent_mean": rng.normal(size=latent).astype(np.float32),
        "latent_logvar": np.full(latent, -4.0, np.float32),
        **cached_text_example(cfg.text, batch_size, seed=seed),
    }


def _xla_flops(compiled) -> float | None:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def _attention_memory(shape: dict) -> dict:
    """Compile-time attention memory growth; {"available": False, ...} if that bench is absent."""
    try:
        from mgen_jax.benchmarks.attention_memory import attention_memory_vs_length
    except ImportError as err:
        return {"available": False, "error": str(err)}
    att = shape["attention"]
    rows = attention_memory_vs_length(("xla", "chunked"), tuple(att["lengths"]),
                                      heads=att["heads"], head_dim=att["head_dim"])
    growth = {r["backend"]: r["peak_growth"] for r in rows if r["peak_growth"] is not None}
    return {"available": True, "lengths": list(att["lengths"]), "rows": rows,
            "peak_growth": growth}


def _peer(cfg, shape: dict) -> dict:
    """The diffusers peer on the device kind our step ran on (torch has no TPU backend here)."""
    device = {"cpu": "cpu", "gpu": "cuda"}.get(jax.default_backend())
    if device is None:
        return {"available": False, "error": f"no PyTorch peer on {jax.default_backend()}"}
    return wan_peer_bench(peer_shape(cfg), steps=shape["steps"], warmup=shape["warmup"],
                          grad_clip=cfg.dit_optimizer.grad_clip, device=device)


def dit_step_timing(cfg, *, steps: int, warmup: int) -> dict:
    """Compile and time the real train step of cfg's DiT on a 1-device mesh."""
    mesh = build_mesh(cfg.mesh, devices=jax.devices()[:1])
    rules = rules_from_preset(cfg.mesh.rules)
    dit = build_dit(cfg)
    optimizer = make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps)
    b = cfg.dit_train.batch_size
    host_batch = _example_batch(cfg, b)
    null_text, null_mask = placeholder_nulls(cfg.text)
    step_fn = make_dit_train_step_on_embeddings(
        dit, optimizer, flow_cfg=cfg.flow, latent_shift=cfg.tae.latent_shift,
        latent_scale=cfg.tae.latent_scale, null_text=null_text, null_mask=null_mask)

    state_sh = train_state_shardings(dit, optimizer, mesh, rules)
    batch_sh = batch_shardings(mesh, rules, host_batch)
    state = init_train_state(dit, optimizer, jax.random.key(cfg.seed), state_sh)
    batch = to_device_batch(host_batch, batch_sh)
    keys = [jax.random.key(i) for i in range(steps + warmup)]

    jitted = jit_train_step(step_fn, mesh, rules, state_sh, batch_sh)
    start = time.perf_counter()
    compiled = jitted.lower(state, batch, keys[0]).compile()
    compile_seconds = time.perf_counter() - start

    holder = {"state": state, "i": 0, "loss": None}

    def one_step():
        holder["state"], metrics = compiled(holder["state"], batch, keys[holder["i"]])
        holder["i"] += 1
        holder["loss"] = metrics["loss"]
        return holder["state"], metrics

    t = median_seconds(one_step, repeats=steps, warmup=warmup)
    loss = float(holder["loss"])
    return {
        "num_params": dit.num_params(),
        "compile_seconds": compile_seconds,
        **step_time_fields(t, steps=steps, warmup=warmup),
        "final_loss": loss,
        "xla_flops": _xla_flops(compiled),
    }


def dit_bench(quick: bool = False, with_peer: bool = True) -> dict:
    """The `dit` benchmark: a JSON-able dict (see the module docstring); with_peer=False skips
    the PyTorch peer."""
    shape = QUICK if quick else FULL
    cfg = bench_config(shape)
    machine = machine_info()
    peak_before = matmul_peak(shape["matmul_sizes"], repeats=shape["matmul_repeats"])
    step = dit_step_timing(cfg, steps=shape["steps"], warmup=shape["warmup"])
    peer = (_peer(cfg, shape) if with_peer
            else {"available": False, "error": "skipped (with_peer=False)"})
    peak_after = matmul_peak(shape["matmul_sizes"], repeats=shape["matmul_repeats"])
    peak = max(peak_before["flops_per_s"], peak_after["flops_per_s"])
    peak_per_cpu_s = max(peak_before["flops_per_cpu_s"], peak_after["flops_per_cpu_s"])
    machine["load_average_1m_end"] = machine_info()["load_average_1m"]

    flops = dit_train_flops(cfg, cfg.dit_train.batch_size)
    model_flops = flops["total"]
    achieved = model_flops / step["step_seconds"]
    xla_flops = step.pop("xla_flops")
    attention = _attention_memory(shape)
    d = cfg.dit
    growth = attention.get("peak_growth", {})
    if peer["available"]:
        peer["fraction_of_matmul_peak"] = peer["achieved_model_flops_per_s"] / peak
        peer["versus_ours"] = {
            "step_time_ratio (ours / peer)": step["step_seconds"] / peer["step"]["step_seconds"],
            "flops_per_s_ratio (ours / peer)": achieved / peer["achieved_model_flops_per_s"],
            "flops_per_cpu_s_ratio (ours / peer)": (
                model_flops / step["step_cpu_seconds"]
                / (peer["model_flops_per_step"] / peer["step"]["step_cpu_seconds"])),
            "model_flops_ratio (ours / peer)": model_flops / peer["model_flops_per_step"],
            "note": "the models differ in FFN (our SwiGLU 3 matrices, Wan's GELU 2), text "
                    "projection and conditioning; FLOP/s compares time per analytic FLOP",
        }
    versus = peer.get("versus_ours", {})
    summary = {
        "shape": f"width {d.width}, depth {d.depth}, heads {d.num_heads}, mlp {d.mlp_dim}, "
                 f"batch {cfg.dit_train.batch_size} x {flops['tokens_per_sample']} tokens "
                 f"(+{total_text_tokens(cfg.text)} text), {cfg.compute_dtype}",
        "step_seconds (median)": step["step_seconds"],
        "model_flops_per_step": model_flops,
        "xla_flops_per_step": xla_flops,
        "achieved_model_flops_per_s": achieved,
        "matmul_peak_flops_per_s": peak,
        "fraction_of_matmul_peak": achieved / peak,
        "fraction_of_matmul_peak (cpu time)": (model_flops / step["step_cpu_seconds"]
                                               / peak_per_cpu_s),
        "attention_peak_growth (xla)": growth.get("xla"),
        "attention_peak_growth (chunked)": growth.get("chunked"),
        "load_average_1m (start, end)": [machine["load_average_1m"],
                                         machine["load_average_1m_end"]],
        "peer (diffusers WanTransformer3DModel) step_seconds": (
            peer["step"]["step_seconds"] if peer["available"] else None),
        "step_time_ratio (ours / peer)": versus.get("step_time_ratio (ours / peer)"),
        "flops_per_s_ratio (ours / peer)": versus.get("flops_per_s_ratio (ours / peer)"),
    }
    return {
        "benchmark": "dit",
        "quick": quick,
        "summary": summary,
        "machine": machine,
        "matmul_peak": {"flops_per_s": peak, "before": peak_before, "after": peak_after,
                        "note": "best size's median; the higher of the runs before and after "
                                "the DiT step is the denominator"},
        "model": {
            "width": d.width, "depth": d.depth, "num_heads": d.num_heads, "mlp_dim": d.mlp_dim,
            "patch_size": list(d.patch_size), "attention": d.attention, "remat": d.remat,
            "scan_layers": d.scan_layers, "compute_dtype": cfg.compute_dtype,
            "param_dtype": cfg.param_dtype, "num_params": step.pop("num_params"),
            "latent_channels": cfg.tae.z_channels,
            "text_encoders": {n: {"tokens": length, "dim": dim}
                              for n, (length, dim) in text_shapes(cfg.text).items()},
            "text_tokens": total_text_tokens(cfg.text), "token_grid": flops["token_grid"],
            "tokens_per_sample": flops["tokens_per_sample"],
            "batch_size": cfg.dit_train.batch_size,
            "data_shape": [cfg.data.frames, cfg.data.height, cfg.data.width],
            "optimizer": "adamw + global-norm clip (training/optimizer.py)",
            "mesh": "1 device (data=fsdp=context=tensor=1), state donated",
        },
        "step": step,
        "flops": {
            "model_flops_per_step": model_flops,
            "model_flops_source": "mgen_jax.models.dit.flops.dit_train_flops (matmuls only, "
                                  "train step = 3x forward)",
            "model_flops_parts": flops["parts"],
            "attention_fraction": flops["attention_fraction"],
            "xla_flops_per_step": xla_flops,
            "xla_flops_note": "compiled.cost_analysis() of the whole step with unrolled layers "
                              "(scan_layers=False), so no scan trip-count correction is needed; "
                              "XLA also counts non-matmul ops (norms, softmax, optimizer)",
            "xla_over_model": xla_flops / model_flops if xla_flops else None,
        },
        "achieved_model_flops_per_s": achieved,
        "achieved_xla_flops_per_s": xla_flops / step["step_seconds"] if xla_flops else None,
        "fraction_of_matmul_peak": achieved / peak,
        # The same ratio in process CPU seconds (all threads): far less sensitive to other
        # processes on a busy machine than wall time; close to the above on a quiet one.
        "cpu_time": {
            "model_flops_per_cpu_s": model_flops / step["step_cpu_seconds"],
            "matmul_flops_per_cpu_s": peak_per_cpu_s,
            "fraction_of_matmul_peak": model_flops / step["step_cpu_seconds"] / peak_per_cpu_s,
        },
        "attention_memory": attention,
        "peer": peer,
        "checks": {
            "step_at_least_half_of_matmul_peak": achieved / peak >= 0.5,
            "chunked_attention_peak_growth_at_most_2.2x": (
                attention["peak_growth"].get("chunked", float("inf")) <= 2.2
                if attention["available"] else None),
            "step_at_least_as_fast_as_peer": (
                versus["step_time_ratio (ours / peer)"] <= 1.0 if peer["available"] else None),
        },
    }
