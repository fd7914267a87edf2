"""`mgen plan`: compile the real DiT train step ahead of time for a TPU topology, on any machine
(Movie Gen Audio's DiT when cfg.job is "video_to_audio": planning/audio_plan.py).

libtpu describes a TPU slice (`jax.experimental.topologies.get_topology_desc`) without a TPU
attached; a mesh built from those devices lets XLA's TPU compiler partition and compile the exact
step `mgen train` runs at pod scale (text embeddings cached: `make_dit_train_step_on_embeddings`),
so memory, FLOPs and collectives are read from the compiled program itself.

FLOPs. XLA's `cost_analysis()` counts a while loop's body once, not once per iteration, and the
DiT's layers are a scan. The plan therefore compiles a second variant of the same step with the
scan unrolled twice as far (`dit.scan_unroll` doubled: the loop body holds two layers, everything
else unchanged). With F(u) = outside + u·layer, the two compiles give the per-layer cost and
    compiled = F(u) + (depth - u) · (F(2u) - F(u)) / u.
XLA's own step-time estimate (`optimal_seconds`, a cost model, not a measurement) is corrected
the same way. As a cross-check the plan also counts the matmul FLOPs of every dot/convolution in
the compiled HLO, each multiplied by the trip counts of the loops it runs in (planning/hlo.py).
Pallas kernels (splash attention) are custom calls whose FLOPs XLA cannot see unless the kernel
carries a cost estimate; the plan reports them and a ratio with the attention core left out.
"""
import copy
import dataclasses
import math
import os
import time

import numpy as np

from mgen_jax.configs.registries import REMAT_POLICIES
from mgen_jax.configs.tae import latent_frames, spatial_compression
from mgen_jax.configs.text import text_shapes
from mgen_jax.parallel.tpu_chips import chip_for_topology

MEMORY_BUDGET = 0.9  # a plan "fits" when the per-chip total is within 90% of HBM
_GIB = 2 ** 30


def topology_devices(topology: str) -> list:
    """The devices of a TPU topology such as 'v5p:8x8x4', described by libtpu (no TPU needed)."""
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")  # quiets a libtpu host lookup
    # Compile-only use of libtpu: no TPU is opened, so several plans (or a plan beside a test
    # run) may load it at once instead of failing on libtpu's single-process lockfile.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies
    try:
        desc = topologies.get_topology_desc(platform="tpu", topology_name=topology)
    except Exception as err:  # noqa: BLE001 - libtpu missing or an unknown name
        raise RuntimeError(f"cannot describe TPU topology {topology!r} (is libtpu installed? "
                           f"`pip install mgen_jax[tpu]`): {err}") from err
    return list(desc.devices)


def slice_layout(topology: str) -> tuple:
    """(chip spec, devices, chips, HBM bytes per device) of a TPU topology such as 'v5p:8x8x4'."""
    chip = chip_for_topology(topology)
    devices = topology_devices(topology)
    chips = len({tuple(getattr(d, "coords", (i,))) for i, d in enumerate(devices)})
    return chip, devices, chips, chip.hbm_bytes * chips / len(devices)


def _latent_shape(cfg) -> tuple:
    s = spatial_compression(cfg.tae)
    return (cfg.dit_train.batch_size, latent_frames(cfg.tae, cfg.data.frames),
            cfg.data.height // s, cfg.data.width // s, cfg.tae.z_channels)


def abstract_batch(cfg, mesh, rules) -> dict:
    """ShapeDtypeStructs (with shardings) of one global batch of cached latents + text."""
    import jax
    import jax.numpy as jnp
    from mgen_jax.models.builders import DTYPES
    from mgen_jax.training.sharded_training import batch_shardings
    b = cfg.dit_train.batch_size
    latent = _latent_shape(cfg)
    shapes = {"latent_mean": (latent, jnp.float32), "latent_logvar": (latent, jnp.float32)}
    for name, (length, dim) in text_shapes(cfg.text).items():
        shapes[f"text.{name}"] = ((b, length, dim), DTYPES[cfg.compute_dtype])
        shapes[f"text_mask.{name}"] = ((b, length), jnp.bool_)
    example = {k: jax.ShapeDtypeStruct(s, d) for k, (s, d) in shapes.items()}
    sh = batch_shardings(mesh, rules, example)
    return {k: jax.ShapeDtypeStruct(s, d, sharding=sh[k]) for k, (s, d) in shapes.items()}


def compile_train_step(cfg, mesh, rules) -> dict:
    """Lower and compile the DiT train step on cached text embeddings for `mesh`."""
    from mgen_jax.models.builders import build_dit
    from mgen_jax.planning.step_on_embeddings import compile_step_on_embeddings
    from mgen_jax.training.dit_step import make_dit_train_step_on_embeddings
    return compile_step_on_embeddings(
        cfg, mesh, rules, build_dit(cfg), cfg.dit_optimizer, cfg.dit_train.steps,
        abstract_batch(cfg, mesh, rules),
        lambda model, optimizer, null_text, null_mask: make_dit_train_step_on_embeddings(
            model, optimizer, flow_cfg=cfg.flow, latent_shift=cfg.tae.latent_shift,
            latent_scale=cfg.tae.latent_scale, null_text=null_text, null_mask=null_mask))


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return dict(cost or {})


def _unroll_variant(cfg, section: str = "dit"):
    """A config whose scan body holds more layers (same depth, same everything else), and the
    two unroll factors; None when the scan cannot be unrolled further with >= 2 iterations.
    section: the transformer's sub-config ("dit", or "audio_dit" for Movie Gen Audio)."""
    d = cfg[section]
    u = d.scan_unroll
    for u2 in range(2 * u, d.depth + 1, u):
        if d.depth % u2 == 0 and d.depth // u2 >= 2:
            variant = copy.deepcopy(cfg)
            variant[section].scan_unroll = u2
            return variant, u, u2
    return None


def _per_device_bytes(tree) -> float:
    """Bytes one device holds of a pytree of ShapeDtypeStructs with shardings."""
    import jax
    total = 0.0
    for leaf in jax.tree.leaves(tree):
        shard = leaf.sharding.shard_shape(leaf.shape)
        total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
    return total


def memory_summary(compiled, hbm_per_device: float) -> dict:
    """Per-device memory of a compiled program (XLA memory analysis) against the chip's HBM."""
    m = compiled.memory_analysis()
    arg, out = int(m.argument_size_in_bytes), int(m.output_size_in_bytes)
    alias, temp = int(m.alias_size_in_bytes), int(m.temp_size_in_bytes)
    code = int(m.generated_code_size_in_bytes)
    total = arg + out - alias + temp + code
    peak = int(getattr(m, "peak_memory_in_bytes", 0) or 0)
    return {
        "argument_bytes": arg, "output_bytes": out, "alias_bytes": alias,
        "temporary_bytes": temp, "generated_code_bytes": code,
        "total_bytes": total,
        "total_formula": "argument + output - alias + temporaries + generated code",
        "xla_peak_bytes": peak or None,
        "host_temporary_bytes": int(getattr(m, "host_temp_size_in_bytes", 0) or 0),
        "hbm_bytes": hbm_per_device,
        "fraction_of_hbm": total / hbm_per_device,
        "budget_fraction": MEMORY_BUDGET,
        "fits": bool(total <= MEMORY_BUDGET * hbm_per_device),
        "total_gib": total / _GIB,
    }


def _memory(compiled, state, batch, hbm_per_device: float) -> dict:
    return {**memory_summary(compiled, hbm_per_device), "arguments_by_kind": {
        "params_bytes": _per_device_bytes(state.params),
        "optimizer_state_bytes": _per_device_bytes(state.opt_state),
        "batch_bytes": _per_device_bytes(batch),
    }}


def _config_summary(cfg, dit, state, analytic) -> dict:
    import jax
    param_dtypes = sorted({str(x.dtype) for x in jax.tree.leaves(state.params)})
    return {
        "dit_size": cfg.dit.size, "depth": cfg.dit.depth, "width": cfg.dit.width,
        "num_heads": cfg.dit.num_heads, "mlp_dim": cfg.dit.mlp_dim,
        "params": dit.num_params(),
        "data_shape": {"frames": cfg.data.frames, "height": cfg.data.height,
                       "width": cfg.data.width},
        "latent_shape": list(_latent_shape(cfg)[1:]),
        "tokens_per_sample": analytic["tokens_per_sample"],
        "token_grid": analytic["token_grid"],
        "text_tokens": analytic["text_tokens"],
        "text_encoders": {n: {"tokens": length, "dim": dim}
                          for n, (length, dim) in text_shapes(cfg.text).items()},
        "global_batch": cfg.dit_train.batch_size,
        "remat": cfg.dit.remat, "attention": cfg.dit.attention,
        "context_parallel": cfg.dit.context_parallel,
        "scan_layers": cfg.dit.scan_layers, "scan_unroll": cfg.dit.scan_unroll,
        "dtypes": {"param_dtype_config": cfg.param_dtype, "params_actual": param_dtypes,
                   "compute_dtype": cfg.compute_dtype, "optimizer_state": param_dtypes},
    }


def analyze_compiled(compiled, hlo_path: str | None = None):
    """The compiled program's HLO read by planning/hlo.py (loops, matmuls, collectives); its
    text is also written to hlo_path when given."""
    from mgen_jax.planning import hlo
    text = compiled.as_text()
    if hlo_path:
        with open(hlo_path, "w") as f:
            f.write(text)
    return hlo.analyze(text)


def plan_train_step(cfg, topology: str, *, correct_scan: bool = True,
                    hlo_path: str | None = None) -> dict:
    """Compile cfg's train step for `topology` and report memory, FLOPs and collectives: the
    video DiT's, or the audio DiT's when cfg.job is "video_to_audio" (planning/audio_plan.py).

    correct_scan: also compile the unrolled variant to count every layer's FLOPs (see module
    docstring); without it the compiled FLOPs come from the HLO matmul count only.
    hlo_path: also write the compiled HLO text there."""
    if cfg.job == "video_to_audio":  # Movie Gen Audio: the audio DiT's step
        from mgen_jax.planning.audio_plan import (audio_analytic_flops, audio_config_summary,
                                                  compile_audio_train_step)
        return plan_compiled_step(
            cfg, topology, section="audio_dit", compile_step=compile_audio_train_step,
            analytic=audio_analytic_flops(cfg), stage_steps=cfg.audio_dit_train.steps,
            summarize=lambda main, analytic: audio_config_summary(cfg, main, analytic),
            correct_scan=correct_scan, hlo_path=hlo_path)
    from mgen_jax.models.dit.flops import dit_train_flops
    return plan_compiled_step(
        cfg, topology, section="dit", compile_step=compile_train_step,
        analytic=dit_train_flops(cfg), stage_steps=cfg.dit_train.steps,
        summarize=lambda main, analytic: _config_summary(cfg, main["model"], main["state"],
                                                         analytic),
        correct_scan=correct_scan, hlo_path=hlo_path)


def plan_compiled_step(cfg, topology: str, *, section: str, compile_step, analytic: dict,
                       stage_steps: int, summarize, correct_scan: bool = True,
                       hlo_path: str | None = None) -> dict:
    """The plan of one scanned transformer's train step, whichever model it is.

    section: the transformer's sub-config (its depth, scan_layers, scan_unroll, remat);
    compile_step(cfg, mesh, rules) -> {"compiled", "model" (PureModel), "state", "state_shardings",
    "batch", "lower_s", "compile_s"}; analytic: the model's analytic FLOP count (total, parts
    with "self_attention_core", attention_fraction, remat_recompute); stage_steps: the phase's
    steps (the whole-stage estimate); summarize(main, analytic) -> the plan's "config"."""
    from mgen_jax.parallel.logical_rules import rules_from_preset
    from mgen_jax.parallel.mesh import build_mesh
    from mgen_jax.parallel.replication import replicated_fraction, replicated_parameters
    from mgen_jax.parallel.sharding import undivided_parameters
    from mgen_jax.planning import hlo
    from mgen_jax.planning.collectives import collectives_summary

    t_start = time.perf_counter()
    chip, devices, chips, hbm_per_device = slice_layout(topology)
    n_dev = len(devices)
    mesh = build_mesh(cfg.mesh, devices)
    rules = rules_from_preset(cfg.mesh.rules)
    model_cfg = cfg[section]

    main = compile_step(cfg, mesh, rules)
    compiled = main["compiled"]
    module = analyze_compiled(compiled, hlo_path)
    cost = _cost(compiled)

    # Compiled FLOPs per device, every loop iteration counted.
    matmul_per_device = hlo.matmul_flops(module)
    flops_1, seconds_1 = float(cost.get("flops", -1)), cost.get("optimal_seconds")
    variant_compile_s = None
    nested = [l for l in module.loops if l["executions"] > 1]
    unknown_trips = [l for l in module.loops if l["trip_count"] is None]
    top_trips = sorted({l["trip_count"] for l in module.loops if l["executions"] == 1
                        and l["trip_count"] is not None})
    variant = _unroll_variant(cfg, section) if (model_cfg.scan_layers and correct_scan) else None
    if not model_cfg.scan_layers or model_cfg.depth // model_cfg.scan_unroll < 2:
        method = ("layers not in a loop (scan_layers off or a single iteration): XLA "
                  "cost_analysis counts every layer as compiled")
        flops_pd, seconds = flops_1, seconds_1
    elif variant is not None:
        vcfg, u1, u2 = variant
        other = compile_step(vcfg, mesh, rules)
        variant_compile_s = other["lower_s"] + other["compile_s"]
        cost_2 = _cost(other["compiled"])
        per_layer = (float(cost_2.get("flops", -1)) - flops_1) / (u2 - u1)
        flops_pd = flops_1 + (model_cfg.depth - u1) * per_layer
        seconds = None
        if seconds_1 is not None and cost_2.get("optimal_seconds") is not None:
            per_layer_s = (float(cost_2["optimal_seconds"]) - float(seconds_1)) / (u2 - u1)
            seconds = float(seconds_1) + (model_cfg.depth - u1) * per_layer_s
        method = (f"XLA cost_analysis counts a scan body once: compiled twice, with "
                  f"scan_unroll={u1} and {u2} (loop body = {u1} and {u2} layers, all else "
                  f"equal); per-layer FLOPs = (F{u2} - F{u1}) / {u2 - u1}; total = F{u1} + "
                  f"(depth - {u1}) x per-layer. Cross-check: HLO dot/convolution FLOPs "
                  f"with loop trip counts ({'/'.join(map(str, top_trips)) or 'none'}).")
        del other
    else:
        method = ("HLO dot/convolution FLOPs with loop trip counts (no unrolled variant "
                  "compiled); non-matmul work is not included")
        flops_pd, seconds = matmul_per_device, None
    if nested:
        method += (f" Warning: {len(nested)} loop(s) run inside other loops (e.g. chunked "
                   "attention); cost_analysis counts their bodies once, so the ratio below uses "
                   "the HLO matmul count, which multiplies by every trip count.")

    compiled_total = flops_pd * n_dev
    matmul_total = matmul_per_device * n_dev
    ratio_basis = "hlo_matmul_flops" if nested else "compiled_flops"
    basis_value = matmul_total if nested else compiled_total
    pallas = hlo.custom_calls(module)
    flops = {
        "analytic_per_step": analytic["total"],
        "analytic_parts": analytic["parts"],
        "analytic_attention_fraction": analytic["attention_fraction"],
        "compiled_per_step": compiled_total,
        "compiled_per_device": flops_pd,
        "hlo_matmul_flops_per_step": matmul_total,
        "cost_analysis_raw_flops_per_device": flops_1,
        "ratio_basis": ratio_basis,
        "compiled_over_analytic": basis_value / analytic["total"],
        "hlo_matmul_over_analytic": matmul_total / analytic["total"],
        "expected_from_remat": analytic["remat_recompute"],
        "flops_method": method,
        "loops": {"count": len(module.loops), "nested": len(nested),
                  "unknown_trip_counts": len(unknown_trips), "top_level_trip_counts": top_trips},
        "pallas_kernels": pallas,
    }
    if pallas["count"] > pallas["with_cost_estimate"]:
        core = analytic["parts"]["self_attention_core"]
        flops["pallas_note"] = (
            f"{pallas['count'] - pallas['with_cost_estimate']} Pallas kernel launches per step "
            "carry no cost estimate: their FLOPs (the self-attention core, analytic "
            f"{core:.3e} per step) are missing from the compiled count")
        flops["compiled_over_analytic_without_attention_core"] = (
            basis_value / (analytic["total"] - core))
        # What the opaque kernel costs by its algorithm, in units of its analytic (3x forward)
        # count: flash backward 2.5x (it recomputes the scores) and forward 1x per run of the
        # forward kernel: counted in the compiled program (2 per backward when the remat policy
        # re-runs it, 1 when it keeps the kernel's named residuals), else the policy's word.
        runs = splash_forward_runs(pallas["kernels"])
        if runs is None:
            runs = 2 if REMAT_POLICIES.entry(model_cfg.remat).meta["reruns_splash_forward"] else 1
        kernel = (runs + 2.5) / 3
        flops["attention_core_hardware_estimate"] = {
            "flops": core * kernel, "over_analytic_core": kernel, "forward_runs": runs,
            "note": "estimate, not compiled: splash is flash-style (forward 2 matmuls, backward "
                    "5 incl. recomputed scores) plus the rematerialised forward"}
        flops["compiled_plus_attention_estimate_over_analytic"] = (
            (basis_value + core * kernel) / analytic["total"])
    else:
        flops["pallas_note"] = ("no Pallas kernels" if pallas["count"] == 0 else
                                "every Pallas kernel carries a cost estimate")

    estimate = {"label": "XLA compiler cost-model estimate of one step (optimal_seconds), "
                         "scan-corrected; NOT a measurement"}
    if seconds is not None and seconds > 0:
        peak = seconds * chips * chip.peak_bf16_flops
        estimate.update(step_seconds=seconds, implied_mfu=analytic["total"] / peak)
        caveats = []
        if pallas["count"] > pallas["with_cost_estimate"]:
            caveats.append("Pallas kernels without cost estimates (the self-attention core) are "
                           "not in this estimate, so the implied MFU is not meaningful; "
                           "implied_mfu_without_attention_core compares like with like")
            estimate["implied_mfu_without_attention_core"] = (
                (analytic["total"] - analytic["parts"]["self_attention_core"]) / peak)
        if nested:
            caveats.append("loops nested inside the layer scan are counted once by the cost "
                           "model: the estimate is low by their other iterations")
        if caveats:
            estimate["note"] = "; ".join(caveats)
    elif seconds_1 is None:
        estimate.update(step_seconds=None, implied_mfu=None,
                        note="the compiled cost analysis offers no optimal_seconds")
    else:
        estimate.update(step_seconds=None, implied_mfu=None,
                        uncorrected_seconds=float(seconds_1),
                        note="no unrolled variant compiled: optimal_seconds counts each scanned "
                             "layer once, so no step estimate is given")

    estimate["whole_step"] = whole_step_estimate(
        estimate, flops, chips=chips, peak_bf16_flops=chip.peak_bf16_flops,
        analytic_total=analytic["total"], stage_steps=stage_steps)

    params_sh = main["state_shardings"].params
    abstract_params = main["model"].abstract_params()
    undivided = undivided_parameters(main["model"].abstract_state, mesh, rules)
    plan = {
        "topology": topology,
        "chip": {"generation": chip.name, "device_kind": devices[0].device_kind,
                 "hbm_bytes_per_chip": chip.hbm_bytes, "peak_bf16_flops": chip.peak_bf16_flops},
        "chips": chips,
        "devices": n_dev,
        "mesh": {k: int(v) for k, v in mesh.shape.items()},
        "rules": cfg.mesh.rules,
        "config": summarize(main, analytic),
        "memory_per_device": {
            **_memory(compiled, main["state"], main["batch"], hbm_per_device),
            "largest_buffers": hlo.largest_buffers(module)},
        "flops": flops,
        "collectives": {
            "note": "per device per step; bytes = larger of input/output buffer x executions",
            **collectives_summary(module)},
        "xla_estimate": estimate,
        "replicated_parameter_fraction": replicated_fraction(params_sh, abstract_params),
        "largest_replicated_parameters": [
            {"path": p, "elements": n} for p, n in replicated_parameters(params_sh,
                                                                          abstract_params)],
        # Parameter dimensions replicated only because their mesh axes do not divide them.
        "undivided_parameters": {
            "count": len(undivided),
            "parameters": [dataclasses.asdict(u) for u in undivided]},
        "compile_seconds": {"lower": main["lower_s"], "compile": main["compile_s"],
                            "flops_variant": variant_compile_s,
                            "total_plan": time.perf_counter() - t_start},
    }
    return plan


def splash_forward_runs(kernels: dict) -> float | None:
    """Forward launches of the splash kernel per backward launch, from the compiled program's
    Pallas kernel names (splash_mha_fwd*, splash_mha_dkv* / splash_mha_bwd*); None if none."""
    forward = sum(n for name, n in kernels.items() if name.startswith("splash_mha_fwd"))
    backward = sum(n for name, n in kernels.items()
                   if name.startswith(("splash_mha_dkv", "splash_mha_bwd")))
    return forward / backward if forward and backward else None


def whole_step_estimate(estimate: dict, flops: dict, *, chips: int, peak_bf16_flops: float,
                        analytic_total: float, stage_steps: int) -> dict | None:
    """The whole step: XLA's estimate of everything it can see, plus the Pallas attention core
    (which XLA cannot see) at its algorithmic cost run at the chips' peak bf16 rate, a roofline
    and so a lower bound for the core; the MFU that implies, and the time to run the config's
    `dit_train.steps` (the recipe stage) on one slice at that rate. An estimate, not a
    measurement; None without a step estimate."""
    seconds = estimate.get("step_seconds")
    if not seconds:
        return None
    core = flops.get("attention_core_hardware_estimate")
    core_seconds = core["flops"] / (chips * peak_bf16_flops) if core else 0.0
    whole = seconds + core_seconds
    return {
        "seconds": whole,
        "xla_seconds": seconds,
        "attention_core_seconds": core_seconds,
        "mfu": analytic_total / (whole * chips * peak_bf16_flops),
        "stage_steps": stage_steps,
        "stage_days_one_slice": stage_steps * whole / 86400,
        "label": "estimate: XLA's cost model for what it compiles + the Pallas attention core at "
                 "peak bf16 (roofline); not a measurement. More slices on the data axis keep "
                 "the step time only if the cross-slice gradient reduction hides behind it",
    }


def _si(x, unit="") -> str:
    if x is None:
        return "n/a"
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def attention_core_rows(flops: dict) -> list:
    """The flops ratio without / with the Pallas attention core, when the plan has one."""
    if "compiled_over_analytic_without_attention_core" not in flops:
        return []
    return [("", f"without self-attention core (Pallas): ratio "
                 f"{flops['compiled_over_analytic_without_attention_core']:.3f}; with the core "
                 f"at its algorithmic cost (estimate): "
                 f"{flops['compiled_plus_attention_estimate_over_analytic']:.3f}")]


def collective_rows(collectives: dict) -> list:
    """One row per collective kind: count and bytes per step."""
    rows = []
    for kind in ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute"):
        lowered = collectives[kind].get("lowered_as_all_reduce", {}).get("count")
        rows.append(("collectives" if kind == "all-gather" else "",
                     f"{kind:<19} {collectives[kind]['count']:>7,} x  "
                     f"{collectives[kind]['bytes'] / _GIB:.2f} GiB"
                     + (f"  ({lowered:,} lowered as all-reduce)" if lowered else "")))
    return rows


def _model_label(config: dict) -> str:
    """'dit 30b', or for Movie Gen Audio 'audio_dit 13b (30.72 s of audio)'."""
    if config.get("model") == "audio_dit":
        return f"audio_dit {config['size']} ({config['audio_seconds']:.2f} s of audio)"
    return f"dit {config['dit_size']}"


def format_plan(plan: dict) -> str:
    """A readable summary table of a plan."""
    c, m, f = plan["config"], plan["memory_per_device"], plan["flops"]
    e, col = plan["xla_estimate"], plan["collectives"]
    gib = lambda b: f"{b / _GIB:.2f} GiB"
    rows = [
        ("topology", f"{plan['topology']} - {plan['chips']} chips ({plan['devices']} devices, "
                     f"{plan['chip']['device_kind']})"),
        ("mesh", " ".join(f"{k}={v}" for k, v in plan["mesh"].items())
         + f"  rules={plan['rules']}"),
        ("model", f"{_model_label(c)}: {c['params'] / 1e9:.2f}B params, "
                  f"{c['tokens_per_sample']:,} tokens/sample, global batch {c['global_batch']}"),
        ("", f"remat={c['remat']} attention={c['attention']} "
             f"params {'/'.join(c['dtypes']['params_actual'])} compute {c['dtypes']['compute_dtype']}"),
        ("memory/device", f"args {gib(m['argument_bytes'])}  out {gib(m['output_bytes'])}  "
                          f"alias {gib(m['alias_bytes'])}  temp {gib(m['temporary_bytes'])}  "
                          f"code {gib(m['generated_code_bytes'])}"),
        ("", f"total {gib(m['total_bytes'])} of {gib(m['hbm_bytes'])} "
             f"({100 * m['fraction_of_hbm']:.1f}%)  fits in {100 * m['budget_fraction']:.0f}%: "
             f"{'yes' if m['fits'] else 'NO'}"),
        ("flops/step", f"analytic {_si(f['analytic_per_step'])}  compiled "
                       f"{_si(f['compiled_per_step'])}  ratio {f['compiled_over_analytic']:.3f} "
                       f"({f['ratio_basis']})  hlo matmul {_si(f['hlo_matmul_flops_per_step'])}"),
    ]
    rows += attention_core_rows(f) + collective_rows(col)
    if e.get("step_seconds") and "implied_mfu_without_attention_core" in e:
        # The opaque Pallas kernels are missing from the estimate: only the like-for-like MFU.
        rows.append(("xla estimate", f"{e['step_seconds']:.3f} s/step without the Pallas attention "
                                     f"-> MFU of the rest {100 * e['implied_mfu_without_attention_core']:.1f}% "
                                     "(compiler estimate, not a measurement)"))
    elif e.get("step_seconds"):
        rows.append(("xla estimate", f"{e['step_seconds']:.3f} s/step -> MFU "
                                     f"{100 * e['implied_mfu']:.1f}% (compiler estimate, not a "
                                     "measurement)"))
    else:
        rows.append(("xla estimate", "n/a"))
    whole = e.get("whole_step")
    if whole:
        rows.append(("whole step", f"{whole['seconds']:.3f} s (XLA {whole['xla_seconds']:.3f} + "
                                   f"attention core {whole['attention_core_seconds']:.3f} at peak)"
                                   f" -> MFU {100 * whole['mfu']:.1f}% (estimate)"))
        rows.append(("", f"stage: {whole['stage_steps']:,} steps = "
                         f"{whole['stage_days_one_slice']:.1f} days on one slice at that rate"))
    rows.append(("replicated", f"{100 * plan['replicated_parameter_fraction']:.3f}% of params"))
    undivided = plan["undivided_parameters"]
    rows.append(("", f"{undivided['count']} parameter dimension(s) replicated because the mesh "
                     "does not divide them"))
    for u in undivided["parameters"][:10]:
        rows.append(("", f"  {u['path']} {tuple(u['shape'])}: dim {u['dim']} "
                         f"({u['logical_axis']}) over {'x'.join(u['mesh_axes'])} = "
                         f"{u['mesh_size']}"))
    cs = plan["compile_seconds"]
    rows.append(("compile", f"lower {cs['lower']:.1f} s + compile {cs['compile']:.1f} s"
                            + (f" (+ {cs['flops_variant']:.1f} s flops variant)"
                               if cs["flops_variant"] else "")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
