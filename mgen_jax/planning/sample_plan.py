"""`mgen plan --mode=sample`: text-to-video sampling compiled ahead of time for a TPU topology.

Sampling (flow/text_to_video_sampler.py) is one program: the prompts are encoded once, then an
Euler loop whose every step is ONE DiT forward over the conditional and unconditional halves
concatenated on the batch axis (classifier-free guidance, flow/guidance.py), then the TAE's
tiled decode. The plan compiles its three parts separately for the topology (libtpu, no TPU
needed, as planning/plan.py does for training) and reads memory, FLOPs and XLA's own time
estimate from each compiled program:

  1. the DiT sampling step: guided velocity at batch 2 x videos + the Euler update, the params
     as a checkpoint restores them (param dtype, sharded on the config's mesh and rules), bf16
     compute as the config says; the latent and the text embeddings enter sharded on the batch
     axes (replicated when the videos do not divide them). The layer scan is corrected as in
     plan.py (a second compile with the scan unrolled twice as far).
  2. the TAE tiled decode of one video on ONE chip, the TAE's params replicated on every chip:
     the videos of a call decode in parallel, one per chip (ceil(videos / chips) rounds). The
     tiles run in a `lax.scan` whose body XLA's cost analysis counts once, so one tile's
     decode is compiled too and the estimate is F(full) + (tiles - 1) x F(tile).
  3. the text encoders (conditional prompts at batch `videos` + the empty prompt at batch 1),
     params replicated on every chip as inference/loading.py places them; once per call.

Seconds per video = (steps x step + rounds x decode + text) / videos, all XLA cost-model
estimates (plus, for Pallas splash attention, the attention core at the chip's peak rate),
never measurements.
"""
import math
import time

import numpy as np

from mgen_jax.configs.registries import SAMPLERS
from mgen_jax.configs.tae import latent_frames, spatial_compression
from mgen_jax.configs.text import text_shapes
from mgen_jax.planning.plan import (_GIB, _cost, _per_device_bytes as _per_device, _si,
                                    _unroll_variant, analyze_compiled, attention_core_rows,
                                    collective_rows, memory_summary, slice_layout)


def default_videos(cfg) -> int:
    """Videos per call when not given: half the train batch, so the guided batch (2 x videos)
    is the training batch and shards over the batch axes exactly as training does."""
    return max(1, cfg.dit_train.batch_size // 2)


def sample_latent_shape(cfg, videos: int) -> tuple:
    s = spatial_compression(cfg.tae)
    return (videos, latent_frames(cfg.tae, cfg.data.frames), cfg.data.height // s,
            cfg.data.width // s, cfg.tae.z_channels)


def dit_forward_flops(cfg, batch: int) -> dict:
    """Analytic model FLOPs of one DiT forward at `batch` samples: every part of the train-step
    count (models/dit/flops.py) is a matmul counted as forward + backward = 3x forward, so a
    forward is exactly a third of each part."""
    from mgen_jax.models.dit.flops import dit_train_flops
    train = dit_train_flops(cfg, batch_size=batch)
    parts = {k: v / 3 for k, v in train["parts"].items()}
    return {"parts": parts, "total": train["total"] / 3, "train_step_total": train["total"],
            "tokens_per_sample": train["tokens_per_sample"], "token_grid": train["token_grid"],
            "text_tokens": train["text_tokens"], "batch_size": batch,
            "attention_fraction": train["attention_fraction"]}


def _batch_or_replicated(mesh, rules, shape):
    """The batch sharding of an array of `shape`, or replicated when its leading dimension is
    not divisible by the batch mesh axes (jit requires even shards)."""
    from mgen_jax.parallel.sharding import batch_sharding, replicated
    sh = batch_sharding(mesh, rules, len(shape))
    lead = sh.spec[0] if len(sh.spec) else None
    axes = () if lead is None else (lead if isinstance(lead, tuple) else (lead,))
    n = math.prod(int(mesh.shape[a]) for a in axes)
    return sh if shape[0] % n == 0 else replicated(mesh)


def _timed_compile(jitted, *args) -> dict:
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    return {"compiled": compiled, "lower_s": t1 - t0, "compile_s": time.perf_counter() - t1}


def compile_sample_step(cfg, mesh, rules, videos: int, text_dtype) -> dict:
    """One Euler step of guided sampling: x [videos, ...] -> x + dt * guided velocity, whose DiT
    forward runs at batch 2 x videos (conditional and unconditional halves concatenated)."""
    import jax
    import jax.numpy as jnp
    from mgen_jax.flow.guidance import guided_velocity
    from mgen_jax.models.builders import build_dit
    from mgen_jax.parallel.logical_rules import activation_sharding
    from mgen_jax.parallel.sharding import replicated
    dit = build_dit(cfg)
    params_sh = dit.shardings(mesh, rules)
    params = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          dit.abstract_params(), params_sh)
    shape = sample_latent_shape(cfg, videos)
    x_sh = _batch_or_replicated(mesh, rules, shape)
    x = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=x_sh)
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated(mesh))

    def context():
        emb, mask = {}, {}
        for name, (length, dim) in text_shapes(cfg.text).items():
            emb[name] = jax.ShapeDtypeStruct(
                (videos, length, dim), text_dtype,
                sharding=_batch_or_replicated(mesh, rules, (videos, length, dim)))
            mask[name] = jax.ShapeDtypeStruct(
                (videos, length), jnp.int32,
                sharding=_batch_or_replicated(mesh, rules, (videos, length)))
        return {"embeddings": emb, "mask": mask}

    cond, uncond = context(), context()
    guidance = float(cfg.flow.guidance_scale)

    def step(params, x, t, t_next, cond, uncond):
        with activation_sharding(mesh, rules):  # traces the DiT, as sampling does
            model = dit.bind(params)

            def model_fn(x, t, ctx):
                return model(x, t, ctx["embeddings"], ctx["mask"])

            velocity = guided_velocity(model_fn, cond, uncond, guidance)
            v = velocity(x, jnp.full((x.shape[0],), t, jnp.float32))
            return (x + (t_next - t) * v).astype(x.dtype)  # the Euler update of flow/samplers.py

    shard = lambda tree: jax.tree.map(lambda a: a.sharding, tree)
    jitted = jax.jit(step, in_shardings=(params_sh, x_sh, scalar.sharding, scalar.sharding,
                                         shard(cond), shard(uncond)),
                     out_shardings=x_sh, donate_argnums=(1,))
    out = _timed_compile(jitted, params, x, scalar, scalar, cond, uncond)
    out.update(dit=dit, params=params, x=x, cond=cond, uncond=uncond)
    return out


def decode_tiles(cfg) -> dict:
    """How tae.tiling cuts the decode of one video: temporal tiles x spatial windows, and the
    latent window one tile decodes (models/tae/tiling.py decode_tiled)."""
    from mgen_jax.models.tae.tiling import _tile_starts
    t = dict(cfg.tae.tiling)
    _, lt, h, w, c = sample_latent_shape(cfg, 1)
    tile, overlap = t["decode_latents"], t["decode_overlap"]
    temporal = 1 if lt <= tile else math.ceil((lt - tile) / (tile - overlap)) + 1
    st, so = t["spatial_tile"], t["spatial_overlap"]
    if st <= 0 or (h <= st and w <= st):
        spatial, th, tw = 1, h, w
    else:
        th, tw = min(st, h), min(st, w)
        spatial = (len(_tile_starts(h, th, max(th - so, 1)))
                   * len(_tile_starts(w, tw, max(tw - so, 1))))
    return {"temporal_tiles": temporal, "spatial_windows": spatial,
            "window_decodes": temporal * spatial, "window_latent_shape": [1, min(lt, tile), th, tw, c],
            "tile_latents": tile, "overlap_latents": overlap, "spatial_tile": st,
            "spatial_overlap": so}


def compile_tae_decode(cfg, device) -> dict:
    """The tiled decode of one video's latent (denormalise, decode_tiled, to uint8) on one chip,
    and, when it is tiled, the decode of one tile alone (for the scan correction)."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from mgen_jax.models.builders import build_tae
    from mgen_jax.models.tae.latent_scaling import denormalize_latents
    from mgen_jax.models.tae.video_range import float_to_video
    one = NamedSharding(Mesh(np.asarray([device]), ("chip",)), PartitionSpec())
    tae = build_tae(cfg)
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=one),
                          tae.abstract_params())
    z = jax.ShapeDtypeStruct(sample_latent_shape(cfg, 1), jnp.float32, sharding=one)
    frames = cfg.data.frames

    def decode(params, z):
        z = denormalize_latents(z, cfg.tae.latent_shift, cfg.tae.latent_scale)
        return float_to_video(tae.bind(params).decode_tiled(z, frames))

    full = _timed_compile(jax.jit(decode, in_shardings=(one, one), out_shardings=one), params, z)
    tiles = decode_tiles(cfg)
    window = None
    if tiles["window_decodes"] > 1:
        zw = jax.ShapeDtypeStruct(tuple(tiles["window_latent_shape"]), jnp.float32, sharding=one)
        window = _timed_compile(jax.jit(lambda p, x: tae.bind(p).decode(x),
                                        in_shardings=(one, one), out_shardings=one), params, zw)
    return {"full": full, "window": window, "tiles": tiles, "params": params}


def compile_text_encode(cfg, mesh, videos: int) -> dict:
    """The text encoders over `videos` prompts and the empty prompt (batch 1), params and inputs
    replicated on every chip (inference/loading.py places the encoders replicated)."""
    import jax
    import jax.numpy as jnp
    from mgen_jax.models.builders import build_text_encoders
    from mgen_jax.parallel.sharding import replicated
    rep = replicated(mesh)
    encoders = build_text_encoders(cfg)
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep),
                          encoders.abstract_params())

    def tokens(n):
        return {name: jax.ShapeDtypeStruct((n, length), jnp.int32, sharding=rep)
                for name, (length, _) in text_shapes(cfg.text).items()}

    def encode(params, ids, mask, null_ids, null_mask):
        model = encoders.bind(params)
        return model(ids, mask), model(null_ids, null_mask)

    ids, null = tokens(videos), tokens(1)
    jitted = jax.jit(encode, out_shardings=rep)
    out = _timed_compile(jitted, params, ids, ids, null, null)
    emb, _ = jax.eval_shape(encode, params, ids, ids, null, null)
    out.update(params=params, num_params=encoders.num_params(),
               output_dtype=jax.tree.leaves(emb)[0].dtype)
    return out


def _seconds(cost) -> float | None:
    s = cost.get("optimal_seconds")
    return None if s is None else float(s)


def _dit_step_costs(cfg, mesh, rules, videos, text_dtype, first, correct_scan: bool) -> dict:
    """Scan-corrected FLOPs and seconds per device of the sampling step (plan.py's method)."""
    cost_1 = _cost(first["compiled"])
    flops_1, seconds_1 = float(cost_1.get("flops", -1)), _seconds(cost_1)
    d = cfg.dit
    if not d.scan_layers or d.depth // d.scan_unroll < 2:
        return {"flops": flops_1, "seconds": seconds_1, "variant_compile_s": None,
                "raw_flops": flops_1, "raw_seconds": seconds_1,
                "method": "layers not in a loop: XLA cost_analysis counts every layer"}
    variant = _unroll_variant(cfg) if correct_scan else None
    if variant is None:
        return {"flops": None, "seconds": None, "variant_compile_s": None, "raw_flops": flops_1,
                "raw_seconds": seconds_1,
                "method": "no unrolled variant compiled: cost_analysis counts one scanned "
                          "layer, so only the HLO matmul count is given"}
    vcfg, u1, u2 = variant
    other = compile_sample_step(vcfg, mesh, rules, videos, text_dtype)
    cost_2 = _cost(other["compiled"])
    per_layer = (float(cost_2.get("flops", -1)) - flops_1) / (u2 - u1)
    flops = flops_1 + (d.depth - u1) * per_layer
    seconds = None
    if seconds_1 is not None and _seconds(cost_2) is not None:
        seconds = seconds_1 + (d.depth - u1) * (_seconds(cost_2) - seconds_1) / (u2 - u1)
    return {"flops": flops, "seconds": seconds, "raw_flops": flops_1, "raw_seconds": seconds_1,
            "variant_compile_s": other["lower_s"] + other["compile_s"],
            "method": f"XLA cost_analysis counts a scan body once: compiled with scan_unroll="
                      f"{u1} and {u2}; total = F{u1} + (depth - {u1}) x (F{u2} - F{u1}) / "
                      f"{u2 - u1} (as the train plan)"}


def plan_sample(cfg, topology: str, *, videos: int | None = None, correct_scan: bool = True,
                include_text: bool = True, hlo_path: str | None = None) -> dict:
    """Compile cfg's sampling (DiT step, TAE decode, text encoders) for `topology` and report
    memory per chip, FLOPs, collectives and XLA's time estimates (see the module docstring)."""
    import jax.numpy as jnp
    from mgen_jax.parallel.logical_rules import rules_from_preset
    from mgen_jax.parallel.mesh import build_mesh
    from mgen_jax.planning import hlo
    from mgen_jax.planning.collectives import collectives_summary

    t_start = time.perf_counter()
    videos = videos or default_videos(cfg)
    chip, devices, chips, hbm = slice_layout(topology)
    n_dev = len(devices)
    mesh = build_mesh(cfg.mesh, devices)
    rules = rules_from_preset(cfg.mesh.rules)
    steps = int(cfg.flow.sample_steps)  # what TextToVideo.generate uses by default
    # Model forwards per step: Euler one, midpoint two (the compiled "step" is one forward).
    forwards = int(SAMPLERS.entry(cfg.flow.sampler).meta.get("evaluations_per_step", 1))

    # 3. text encoders (first: their output dtype is what the DiT step receives)
    text = None
    text_dtype = jnp.float32
    if include_text:
        text = compile_text_encode(cfg, mesh, videos)
        text_dtype = text["output_dtype"]

    # 1. the DiT sampling step
    step = compile_sample_step(cfg, mesh, rules, videos, text_dtype)
    compiled = step["compiled"]
    module = analyze_compiled(compiled, hlo_path)
    costs = _dit_step_costs(cfg, mesh, rules, videos, text_dtype, step, correct_scan)
    analytic = dit_forward_flops(cfg, 2 * videos)
    matmul_total = hlo.matmul_flops(module) * n_dev
    nested = [l for l in module.loops if l["executions"] > 1]
    compiled_total = None if costs["flops"] is None else costs["flops"] * n_dev
    basis = matmul_total if (nested or compiled_total is None) else compiled_total
    pallas = hlo.custom_calls(module)
    hidden_core = pallas["count"] > pallas["with_cost_estimate"]
    core = analytic["parts"]["self_attention_core"]
    flops = {
        "analytic_forward": analytic["total"], "analytic_parts": analytic["parts"],
        "analytic_train_step_same_batch": analytic["train_step_total"],
        "compiled_per_step": compiled_total,
        "compiled_per_device": costs["flops"],
        "cost_analysis_raw_flops_per_device": costs["raw_flops"],
        "hlo_matmul_flops_per_step": matmul_total,
        "ratio_basis": ("hlo_matmul_flops" if (nested or compiled_total is None)
                        else "compiled_flops"),
        "compiled_over_analytic": basis / analytic["total"],
        "hlo_matmul_over_analytic": matmul_total / analytic["total"],
        "flops_method": costs["method"],
        "loops": {"count": len(module.loops), "nested": len(nested)},
        "pallas_kernels": pallas,
    }
    step_seconds = costs["seconds"]
    estimate = {"label": "XLA compiler cost-model estimate (optimal_seconds), scan-corrected; "
                         "NOT a measurement", "xla_step_seconds": step_seconds}
    if hidden_core:
        flops["pallas_note"] = (
            f"{pallas['count'] - pallas['with_cost_estimate']} Pallas kernel launches carry no "
            f"cost estimate: the self-attention core (analytic forward {core:.3e}) is missing "
            "from the compiled count and from XLA's time")
        flops["compiled_over_analytic_without_attention_core"] = basis / (analytic["total"] - core)
        # Forward only, no remat: the flash forward's two matmuls are the analytic core exactly.
        flops["compiled_plus_attention_estimate_over_analytic"] = (basis + core) / analytic["total"]
        core_s = core / (chips * chip.peak_bf16_flops)
        estimate["attention_core_seconds_estimate"] = core_s
        estimate["attention_core_note"] = (
            "estimate, not compiled: the splash kernel's forward FLOPs (= the analytic core) at "
            "the chip's peak bf16 rate on every chip, a lower bound on its time")
        step_seconds = None if step_seconds is None else step_seconds + core_s
    else:
        flops["pallas_note"] = ("no Pallas kernels" if pallas["count"] == 0 else
                                "every Pallas kernel carries a cost estimate")
    estimate["step_seconds"] = step_seconds
    if step_seconds:
        estimate["implied_mfu"] = analytic["total"] / (step_seconds * chips * chip.peak_bf16_flops)

    dit_memory = memory_summary(compiled, hbm)
    dit_memory["arguments_by_kind"] = {
        "params_bytes": _per_device(step["params"]),
        "latent_bytes": _per_device(step["x"]),
        "text_bytes": _per_device(step["cond"]) + _per_device(step["uncond"])}
    dit_memory["largest_buffers"] = hlo.largest_buffers(module)

    # 2. the TAE decode, one video per chip
    tae = compile_tae_decode(cfg, devices[0])
    tiles = tae["tiles"]
    full_cost = _cost(tae["full"]["compiled"])
    full_flops, full_s = float(full_cost.get("flops", -1)), _seconds(full_cost)
    tae_module = analyze_compiled(tae["full"]["compiled"])
    decode_flops, decode_s = full_flops, full_s
    if tae["window"] is not None:
        wcost = _cost(tae["window"]["compiled"])
        extra = tiles["window_decodes"] - 1
        decode_flops = full_flops + extra * float(wcost.get("flops", -1))
        ws = _seconds(wcost)
        decode_s = None if (full_s is None or ws is None) else full_s + extra * ws
    rounds = math.ceil(videos / chips)
    decode = {
        "layout": (f"one video per chip: the TAE's params replicated on every chip, the "
                   f"{videos} video(s) of a call decoded in parallel on {min(videos, chips)} "
                   f"chip(s), {rounds} round(s)"),
        "latent_shape": list(sample_latent_shape(cfg, 1)),
        "video_shape": [1, cfg.data.frames, cfg.data.height, cfg.data.width, 3],
        "tiles": tiles,
        "memory_per_device": {**memory_summary(tae["full"]["compiled"], hbm),
                              "params_bytes": _per_device(tae["params"])},
        "flops_per_video": decode_flops,
        "hlo_matmul_flops_per_video": hlo.matmul_flops(tae_module),
        "cost_analysis_raw_flops": full_flops,
        "flops_method": ("XLA cost_analysis counts the tile scan's body once: F(full) + "
                         "(tiles - 1) x F(one tile's decode)" if tae["window"] is not None
                         else "untiled: cost_analysis counts everything"),
        "seconds_per_video": decode_s,
        "rounds": rounds,
        "seconds_per_call": None if decode_s is None else rounds * decode_s,
        "compile_s": tae["full"]["lower_s"] + tae["full"]["compile_s"] + (
            0 if tae["window"] is None else tae["window"]["lower_s"] + tae["window"]["compile_s"]),
    }

    text_part = {"included": False,
                 "note": "text encoders excluded (include_text=False)"}
    if text is not None:
        tcost = _cost(text["compiled"])
        text_part = {
            "included": True,
            "layout": "params and tokens replicated on every chip (as inference/loading.py); "
                      f"{videos} prompt(s) + the empty prompt, once per call",
            "params": text["num_params"],
            "memory_per_device": {**memory_summary(text["compiled"], hbm),
                                  "params_bytes": _per_device(text["params"])},
            "flops": float(tcost.get("flops", -1)),
            "seconds_per_call": _seconds(tcost),
            "compile_s": text["lower_s"] + text["compile_s"]}

    # 4. seconds per video
    per_call, per_video = None, None
    text_s = text_part.get("seconds_per_call") or 0.0
    if step_seconds is not None and decode["seconds_per_call"] is not None:
        per_call = steps * forwards * step_seconds + decode["seconds_per_call"] + text_s
        per_video = per_call / videos
    resident = (dit_memory["argument_bytes"] + decode["memory_per_device"]["argument_bytes"]
                + (text_part["memory_per_device"]["argument_bytes"] if text else 0))
    temps = max(dit_memory["temporary_bytes"], decode["memory_per_device"]["temporary_bytes"],
                text_part["memory_per_device"]["temporary_bytes"] if text else 0)
    timing = {
        "label": "compiler estimates (XLA cost model"
                 + (" + the Pallas attention core at peak" if hidden_core else "")
                 + "), NOT measurements",
        "steps": steps, "steps_from": "cfg.flow.sample_steps (TextToVideo.generate's default)",
        "sampler": cfg.flow.sampler, "forwards_per_step": forwards,
        "videos_per_call": videos,
        "step_seconds": step_seconds,
        "decode_seconds_per_call": decode["seconds_per_call"],
        "text_seconds_per_call": text_part.get("seconds_per_call"),
        "seconds_per_call": per_call,
        "seconds_per_video": per_video,
        "formula": "(steps x step + rounds x decode per video + text) / videos",
    }
    c = cfg.dit
    return {
        "mode": "sample",
        "topology": topology,
        "chip": {"generation": chip.name, "device_kind": devices[0].device_kind,
                 "hbm_bytes_per_chip": chip.hbm_bytes, "peak_bf16_flops": chip.peak_bf16_flops},
        "chips": chips, "devices": n_dev,
        "mesh": {k: int(v) for k, v in mesh.shape.items()},
        "rules": cfg.mesh.rules,
        "config": {
            "dit_size": c.size, "depth": c.depth, "width": c.width, "params": step["dit"].num_params(),
            "attention": c.attention, "context_parallel": c.context_parallel,
            "scan_layers": c.scan_layers, "scan_unroll": c.scan_unroll,
            "data_shape": {"frames": cfg.data.frames, "height": cfg.data.height,
                           "width": cfg.data.width},
            "latent_shape": list(sample_latent_shape(cfg, videos)),
            "tokens_per_sample": analytic["tokens_per_sample"],
            "text_tokens": analytic["text_tokens"],
            "videos_per_call": videos, "dit_batch": 2 * videos,
            "guidance_scale": float(cfg.flow.guidance_scale),
            "dtypes": {"params": sorted({str(p.dtype) for p in _leaves(step["params"])}),
                       "compute": cfg.compute_dtype, "text_embeddings": str(np.dtype(text_dtype)),
                       "note": "params as a checkpoint restores them (the sampler does not "
                               "cast them); the DiT computes in the compute dtype"},
            "tae": {"ch": cfg.tae.ch, "ch_mult": list(cfg.tae.ch_mult),
                    "num_res_blocks": cfg.tae.num_res_blocks},
        },
        "dit_step": {"memory_per_device": dit_memory, "flops": flops,
                     "collectives": {"note": "per device per step; bytes = larger of "
                                             "input/output buffer x executions",
                                     **collectives_summary(module)},
                     "xla_estimate": estimate,
                     "sharding": {"latent": str(step["x"].sharding.spec)}},
        "tae_decode": decode,
        "text_encoders": text_part,
        "resident_memory_estimate": {
            "bytes": resident + temps, "gib": (resident + temps) / _GIB,
            "fraction_of_hbm": (resident + temps) / hbm,
            "note": "estimate: sampling is one program holding every part's arguments (DiT "
                    "shards, TAE and text params) and running the parts one after another; "
                    "sum of their arguments + the largest temporaries"},
        "timing": timing,
        "compile_seconds": {"dit_lower": step["lower_s"], "dit_compile": step["compile_s"],
                            "dit_flops_variant": costs["variant_compile_s"],
                            "tae": decode["compile_s"], "text": text_part.get("compile_s"),
                            "total_plan": time.perf_counter() - t_start},
    }


def _leaves(tree):
    import jax
    return jax.tree.leaves(tree)


def format_sample_plan(plan: dict) -> str:
    """A readable summary table of a sample plan."""
    c, s, d, t = plan["config"], plan["dit_step"], plan["tae_decode"], plan["timing"]
    m, f, e, col = s["memory_per_device"], s["flops"], s["xla_estimate"], s["collectives"]
    gib = lambda b: f"{b / _GIB:.2f} GiB"
    sec = lambda x: "n/a" if x is None else f"{x:.4g} s"
    rows = [
        ("mode", "sample (text -> video inference), compiled ahead of time; every time below is "
                 "a compiler estimate, not a measurement"),
        ("topology", f"{plan['topology']} - {plan['chips']} chips ({plan['devices']} devices, "
                     f"{plan['chip']['device_kind']})"),
        ("mesh", " ".join(f"{k}={v}" for k, v in plan["mesh"].items())
         + f"  rules={plan['rules']}"),
        ("model", f"dit {c['dit_size']}: {c['params'] / 1e9:.2f}B params, "
                  f"{c['tokens_per_sample']:,} tokens/sample, {c['videos_per_call']} video(s)/call "
                  f"-> DiT batch {c['dit_batch']} (cond + uncond)"),
        ("", f"attention={c['attention']} params {'/'.join(c['dtypes']['params'])} compute "
             f"{c['dtypes']['compute']}  latent {c['latent_shape']} ({s['sharding']['latent']})"),
        ("dit step mem", f"args {gib(m['argument_bytes'])}  out {gib(m['output_bytes'])}  "
                         f"alias {gib(m['alias_bytes'])}  temp {gib(m['temporary_bytes'])}  "
                         f"code {gib(m['generated_code_bytes'])}"),
        ("", f"total {gib(m['total_bytes'])} of {gib(m['hbm_bytes'])} "
             f"({100 * m['fraction_of_hbm']:.1f}%) per chip"),
        ("dit flops", f"analytic forward {_si(f['analytic_forward'])}  compiled "
                      f"{_si(f['compiled_per_step'])}  ratio {f['compiled_over_analytic']:.3f} "
                      f"({f['ratio_basis']})  hlo matmul {_si(f['hlo_matmul_flops_per_step'])}"),
    ]
    rows += attention_core_rows(f) + collective_rows(col)
    step = f"XLA {sec(e['xla_step_seconds'])}"
    if "attention_core_seconds_estimate" in e:
        step += (f" + attention core at peak (estimate) {sec(e['attention_core_seconds_estimate'])}"
                 f" = {sec(e['step_seconds'])}")
    rows.append(("step estimate", step))
    dm = d["memory_per_device"]
    tl = d["tiles"]
    rows += [
        ("tae decode", d["layout"]),
        ("", f"{tl['temporal_tiles']} temporal tile(s) of {tl['tile_latents']} latent frames "
             f"(overlap {tl['overlap_latents']}) x {tl['spatial_windows']} spatial window(s)"),
        ("", f"memory/chip: args {gib(dm['argument_bytes'])}  temp {gib(dm['temporary_bytes'])}  "
             f"out {gib(dm['output_bytes'])}  total {gib(dm['total_bytes'])} "
             f"({100 * dm['fraction_of_hbm']:.1f}%)"),
        ("", f"{_si(d['flops_per_video'])}FLOP/video  estimate {sec(d['seconds_per_video'])} per "
             f"video, {sec(d['seconds_per_call'])} per call ({d['rounds']} round(s))"),
    ]
    tx = plan["text_encoders"]
    if tx["included"]:
        tm = tx["memory_per_device"]
        rows.append(("text encoders", f"{tx['params'] / 1e9:.2f}B params replicated: memory/chip "
                                      f"{gib(tm['total_bytes'])} "
                                      f"({100 * tm['fraction_of_hbm']:.1f}%), estimate "
                                      f"{sec(tx['seconds_per_call'])} per call"))
    else:
        rows.append(("text encoders", tx["note"]))
    r = plan["resident_memory_estimate"]
    rows.append(("whole program", f"~{r['gib']:.2f} GiB/chip ({100 * r['fraction_of_hbm']:.1f}%) "
                                  "all params resident + largest temporaries (estimate)"))
    rows.append(("seconds/video", f"{t['steps']} steps x {t['forwards_per_step']} x "
                                  f"{sec(t['step_seconds'])} + decode "
                                  f"{sec(t['decode_seconds_per_call'])} + text "
                                  f"{sec(t['text_seconds_per_call'])} = "
                                  f"{sec(t['seconds_per_call'])} per call / {t['videos_per_call']}"
                                  f" = {sec(t['seconds_per_video'])} per video (compiler "
                                  "estimate, not a measurement)"))
    cs = plan["compile_seconds"]
    rows.append(("compile", f"dit {cs['dit_lower'] + cs['dit_compile']:.1f} s"
                            + (f" (+ {cs['dit_flops_variant']:.1f} s flops variant)"
                               if cs["dit_flops_variant"] else "")
                            + f", tae {cs['tae']:.1f} s"
                            + (f", text {cs['text']:.1f} s" if cs["text"] is not None else "")
                            + f"; plan {cs['total_plan']:.1f} s"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
