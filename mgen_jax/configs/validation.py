"""validate(config): reject unknown keys and impossible shapes before any JAX work happens."""
from typing import Any

import ml_collections

from mgen_jax.configs.dac_vae import hop_length, latent_rate

from mgen_jax.configs.dit import BLOCK_STYLES
from mgen_jax.configs.mesh import MESH_AXES
from mgen_jax.configs.optimizer import LR_SCHEDULES
from mgen_jax.configs.registries import (ATTENTION_BACKENDS, CONTEXT_PARALLEL, DATA_SOURCES,
                                         DIT_PRESETS, JOBS, MESH_RULES, REMAT_POLICIES, SAMPLERS,
                                         SCHEDULES, TEXT_ENCODER_KINDS)
from mgen_jax.configs.schema import default_experiment
from mgen_jax.configs.tae import latent_frames, spatial_compression, temporal_compression
from mgen_jax.configs.text import INPUTS, architecture_keys


class ConfigError(ValueError):
    """A config that cannot run; the message names the offending key."""


# Groups whose entries are named by the experiment (any names), each entry checked against the
# schema's first entry: text.encoders (an ablation may keep any subset of encoders).
NAMED_GROUPS = ("text.encoders",)
# Architecture dicts whose keys depend on a sibling 'kind': checked in _validate_text.
FREE_FORM = ("model",)


def _check_keys(cfg: Any, schema: Any, prefix: str) -> None:
    if not isinstance(schema, ml_collections.ConfigDict):
        return
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"config key {prefix!r} must be a group of keys, got {cfg!r}")
    if prefix in NAMED_GROUPS:
        entry_schema = schema[sorted(schema.keys())[0]]
        for key in cfg.keys():
            _check_keys(cfg[key], entry_schema, f"{prefix}.{key}")
        return
    if prefix.rsplit(".", 1)[-1] in FREE_FORM:
        return
    for key in cfg.keys():
        name = f"{prefix}.{key}" if prefix else key
        if key not in schema:
            known = ", ".join(sorted(schema.keys()))
            raise ConfigError(f"unknown config key {name!r} (known here: {known})")
        _check_keys(cfg[key], schema[key], name)
    for key in schema.keys():
        if key not in cfg:
            raise ConfigError(f"config key {(prefix + '.' if prefix else '') + key!r} is missing")


def _require(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}")


def _require_registered(value, key: str, registry) -> None:
    """value must name an entry of the registry (configs/registries.py)."""
    _require(value in registry, key, f"{value!r} unknown; choose one of {registry.choices()}")


def _discriminator_patches(side: int, layers: int) -> int:
    """Patch logits along one side: each 4x4 stride-2 pad-1 conv floors side/2, the two stride-1
    convs remove one each (models/tae/discriminator.py)."""
    for _ in range(layers):
        side //= 2
    return side - 2


def _validate_tae_losses(tae, data) -> None:
    for key in ("opl_weight", "perceptual_weight", "disc_weight"):
        _require(tae[key] >= 0, f"tae.{key}", f"{tae[key]} must be >= 0")
    _require(tae.opl_r > 0, "tae.opl_r", f"{tae.opl_r} must be > 0")
    if tae.perceptual_weight > 0:
        paths = [p.strip() for p in tae.lpips_checkpoint.split(",")]
        _require(bool(tae.lpips_checkpoint.strip()) and len(paths) <= 2 and all(paths),
                 "tae.lpips_checkpoint", f"{tae.lpips_checkpoint!r}: tae.perceptual_weight > 0 "
                 "needs 'lpips.pth' or 'vgg16.pth,lin.pth'")
        for key in ("height", "width"):  # VGG16's four 2x2 pools
            _require(data[key] >= 16, f"data.{key}", f"{data[key]} < 16 pixels, too small for "
                     "LPIPS (tae.perceptual_weight > 0)")
    _require(tae.disc_start >= 0, "tae.disc_start", f"{tae.disc_start} must be >= 0")
    _require(tae.opl_start >= 0, "tae.opl_start", f"{tae.opl_start} must be >= 0")
    _require(tae.disc_ndf >= 1, "tae.disc_ndf", f"{tae.disc_ndf} must be >= 1")
    _require(tae.disc_layers >= 1, "tae.disc_layers", f"{tae.disc_layers} must be >= 1")
    if tae.disc_weight > 0:
        for key in ("height", "width"):
            _require(_discriminator_patches(data[key], tae.disc_layers) >= 1, "tae.disc_layers",
                     f"{tae.disc_layers} layers leave no patch of data.{key}={data[key]}")


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Returns cfg unchanged if it can run; raises ConfigError naming the key otherwise."""
    _check_keys(cfg, default_experiment(), "")
    for key, registry in (("job", JOBS), ("data.source", DATA_SOURCES), ("dit.size", DIT_PRESETS),
                          ("dit.remat", REMAT_POLICIES), ("dit.attention", ATTENTION_BACKENDS),
                          ("dit.context_parallel", CONTEXT_PARALLEL), ("mesh.rules", MESH_RULES),
                          ("flow.schedule", SCHEDULES), ("flow.sampler", SAMPLERS)):
        group, _, leaf = key.rpartition(".")
        _require_registered((cfg[group] if group else cfg)[leaf], key, registry)
    for key in ("param_dtype", "compute_dtype"):
        _require(cfg[key] in ("float32", "bfloat16"), key, f"{cfg[key]!r} not float32/bfloat16")

    sizes = [cfg.mesh[a] for a in MESH_AXES]
    _require(sum(s == -1 for s in sizes) <= 1, "mesh", "at most one axis may be -1")
    for a in MESH_AXES:
        _require(cfg.mesh[a] == -1 or cfg.mesh[a] >= 1, f"mesh.{a}", "must be -1 or >= 1")

    tae, dit, data = cfg.tae, cfg.dit, cfg.data
    _require(tae.z_channels >= 1, "tae.z_channels", "must be >= 1")
    _require(len(tae.ch_mult) >= 1, "tae.ch_mult", "needs at least one level")
    _require(0 <= tae.temporal_downsamples <= len(tae.ch_mult) - 1, "tae.temporal_downsamples",
             f"must be between 0 and len(tae.ch_mult)-1 = {len(tae.ch_mult) - 1}")
    _require(tae.get("spatial_downsamples") is None
             or 0 <= tae.spatial_downsamples <= len(tae.ch_mult) - 1, "tae.spatial_downsamples",
             f"must be None or between 0 and len(tae.ch_mult)-1 = {len(tae.ch_mult) - 1}")
    _require(len(tae.pixel_patch) == 2 and min(tae.pixel_patch) >= 1, "tae.pixel_patch",
             "must be (time, space) factors >= 1")
    for m in tae.ch_mult:
        _require((tae.ch * m) % tae.norm_groups == 0, "tae.norm_groups",
                 f"{tae.norm_groups} groups do not divide {tae.ch * m} channels")

    s, tc = spatial_compression(tae), temporal_compression(tae)
    _require(tae.image_batches >= 0 and tae.video_batches >= 1, "tae.video_batches",
             "needs image_batches >= 0 and video_batches >= 1")
    _require(tae.images_per_clip >= 1, "tae.images_per_clip", "must be >= 1")
    tiles = tae.tiling
    _require(tiles.encode_frames >= tc and tiles.encode_frames % tc == 0,
             "tae.tiling.encode_frames", f"{tiles.encode_frames} is not a positive multiple of "
             f"the temporal compression {tc}")
    _require(tiles.decode_latents >= 1 and 0 <= 2 * tiles.decode_overlap <= tiles.decode_latents,
             "tae.tiling.decode_overlap", f"{tiles.decode_overlap} must be between 0 and half of "
             f"tae.tiling.decode_latents = {tiles.decode_latents}")
    _require(tiles.spatial_tile == 0 or 0 <= tiles.spatial_overlap < tiles.spatial_tile,
             "tae.tiling.spatial_overlap", f"{tiles.spatial_overlap} must be below "
             f"tae.tiling.spatial_tile = {tiles.spatial_tile} (or spatial_tile 0: off)")
    _validate_tae_losses(tae, data)
    if cfg.job != "video_to_audio":  # the audio job's clips never reach the TAE or video DiT
        _validate_video_grid(data, dit, tae, tc, s)
    else:
        _validate_audio_clips(cfg)
    _require(dit.block_style in BLOCK_STYLES, "dit.block_style",
             f"{dit.block_style!r}: choose one of {', '.join(BLOCK_STYLES)}")
    _require(dit.width % dit.num_heads == 0, "dit.num_heads",
             f"{dit.num_heads} heads do not divide width {dit.width}")
    _require(dit.scan_unroll >= 1 and dit.depth % dit.scan_unroll == 0, "dit.scan_unroll",
             f"{dit.scan_unroll} must be >= 1 and divide depth {dit.depth}")

    _require(cfg.flow.latent_sample in ("posterior", "mean"), "flow.latent_sample",
             f"{cfg.flow.latent_sample!r} unknown (posterior|mean)")
    _require(cfg.flow.sample_steps >= 2, "flow.sample_steps", "must be >= 2")
    _require(0.0 <= cfg.flow.text_dropout < 1.0, "flow.text_dropout", "must be in [0, 1)")
    for phase in ("tae", "dit"):
        t, o = cfg[f"{phase}_train"], cfg[f"{phase}_optimizer"]
        _require(t.steps >= 0, f"{phase}_train.steps", "must be >= 0")
        _require(t.batch_size >= 1, f"{phase}_train.batch_size", "must be >= 1")
        _require(t.checkpoint_every >= 1 and t.log_every >= 1, f"{phase}_train",
                 "log/checkpoint intervals >= 1")
        _require(t.keep_checkpoints >= 1, f"{phase}_train.keep_checkpoints", "must be >= 1")
        _require(o.lr > 0, f"{phase}_optimizer.lr", "must be > 0")
        _require(0 <= o.warmup_steps <= max(t.steps, 1), f"{phase}_optimizer.warmup_steps",
                 f"{o.warmup_steps} must be between 0 and {phase}_train.steps = {t.steps}")
        _validate_optimizer(cfg, phase)
        _validate_init_from(cfg, phase)
    _validate_text(cfg.text)
    _validate_data(cfg.data)
    for phase in ("tae", "dit"):  # after the data: they read data.source
        _validate_observability(cfg, phase)
    return cfg


def _validate_optimizer(cfg, phase: str) -> None:
    """Schedule, accumulation, EMA and guard keys of `<phase>_optimizer` (configs/optimizer.py)."""
    o, key = cfg[f"{phase}_optimizer"], f"{phase}_optimizer"
    batch_size = cfg[f"{phase}_train"].batch_size
    _require_registered(o.schedule, f"{key}.schedule", LR_SCHEDULES)
    if LR_SCHEDULES.entry(o.schedule).meta.get("on_plateau"):
        _require(0.0 < o.plateau_factor < 1.0, f"{key}.plateau_factor",
                 f"{o.plateau_factor} must be in (0, 1)")
        _require(o.plateau_window >= 1, f"{key}.plateau_window", f"{o.plateau_window} must be >= 1")
        _require(o.plateau_on == "validation_loss" or (o.plateau_patience >= o.plateau_window
                 and o.plateau_patience % o.plateau_window == 0), f"{key}.plateau_patience",
                 f"{o.plateau_patience} must be a positive multiple of {key}.plateau_window = "
                 f"{o.plateau_window} (the loss is compared window by window)")
        _require(0.0 <= o.plateau_min_scale <= 1.0, f"{key}.plateau_min_scale",
                 f"{o.plateau_min_scale} must be in [0, 1]")
        _require(o.plateau_on in ("train_loss", "validation_loss"), f"{key}.plateau_on",
                 f"{o.plateau_on!r} unknown (train_loss|validation_loss)")
        every = cfg[f"{phase}_train"].validate_every
        if o.plateau_on == "validation_loss":
            _require(every > 0 and o.plateau_patience % every == 0, f"{key}.plateau_on",
                     f"validation_loss needs {phase}_train.validate_every > 0 dividing "
                     f"plateau_patience = {o.plateau_patience} (got validate_every={every})")
    k = o.accumulation_steps
    _require(k >= 1 and batch_size % k == 0, f"{key}.accumulation_steps",
             f"{k} must be >= 1 and divide {phase}_train.batch_size = {batch_size}")
    _require(k == 1 or cfg.data.batching == "fixed", f"{key}.accumulation_steps",
             f"{k} needs data.batching=fixed (token_budget batches vary in size per bucket)")
    _require(0.0 <= o.ema_decay < 1.0, f"{key}.ema_decay", f"{o.ema_decay} must be in [0, 1)")
    _require(o.max_consecutive_skips >= 0, f"{key}.max_consecutive_skips",
             f"{o.max_consecutive_skips} must be >= 0 (0: never stop)")
    if phase == "tae" and cfg.tae.disc_weight > 0:  # training/tae_gan_step.py does neither
        _require(k == 1, f"{key}.accumulation_steps",
                 f"{k}: the TAE's GAN step (tae.disc_weight > 0) does not accumulate")
        _require(not LR_SCHEDULES.entry(o.schedule).meta.get("on_plateau"), f"{key}.schedule",
                 "plateau needs the step's loss, which the TAE's GAN step (tae.disc_weight > 0) "
                 "does not hand to the optimizer")


def _validate_observability(cfg, phase: str) -> None:
    """Validation, sample, profile and MFU keys of `<phase>_train` (configs/training.py)."""
    t, key = cfg[f"{phase}_train"], f"{phase}_train"
    _require(t.validate_every >= 0 and t.sample_every >= 0, key,
             "validate_every and sample_every must be >= 0 (0: off)")
    if t.validate_every or t.sample_every:
        _require(phase == "dit" and cfg.job == "text_to_video", key,
                 "validate_every / sample_every: the text_to_video job's DiT phase only")
    if t.validate_every:
        _require(t.validation_clips >= t.batch_size, f"{key}.validation_clips",
                 f"{t.validation_clips} must hold at least one batch of {key}.batch_size = "
                 f"{t.batch_size}")
        _require(len(t.validation_t) >= 1 and all(0.0 <= v <= 1.0 for v in t.validation_t),
                 f"{key}.validation_t", f"{tuple(t.validation_t)} must be values of t in [0, 1]")
    _require(t.validation_clips >= 0, f"{key}.validation_clips", "must be >= 0")
    _require(t.sample_count >= 1, f"{key}.sample_count", "must be >= 1")
    steps = tuple(t.profile_steps)
    _require(not steps or (len(steps) == 2 and 1 <= steps[0] <= steps[1]), f"{key}.profile_steps",
             f"{steps} must be () or (first, last) with 1 <= first <= last")
    _require(t.peak_flops_per_device >= 0, f"{key}.peak_flops_per_device", "must be >= 0")


def _validate_data(data) -> None:
    _require(data.batching in ("fixed", "token_budget"), "data.batching",
             f"{data.batching!r} unknown (fixed|token_budget)")
    _require(data.batching != "token_budget" or data.token_budget > 0, "data.token_budget",
             f"{data.token_budget} must be > 0 with data.batching=token_budget")
    _require(data.small_buckets in ("drop", "repeat"), "data.small_buckets",
             f"{data.small_buckets!r} unknown (drop|repeat)")
    weights = dict(data.mixture)
    _require(set(weights) <= {"images", "videos"} and all(w >= 0 for w in weights.values())
             and sum(weights.values()) > 0, "data.mixture",
             f"{weights} must weigh 'images' and/or 'videos' with weights >= 0, not all 0")
    _require(data.source != "records" or bool(data.dir), "data.dir",
             "is empty: data.source=records trains on a dataset built by `mgen data build`; "
             "set data.dir to its folder")


def _validate_text(text) -> None:
    _require(len(text.encoders) >= 1, "text.encoders", "needs at least one encoder")
    for name in text.encoders.keys():
        spec, key = text.encoders[name], f"text.encoders.{name}"
        _require_registered(spec.kind, f"{key}.kind", TEXT_ENCODER_KINDS)
        _require(spec.input in INPUTS, f"{key}.input", f"{spec.input!r} unknown; choose one of {INPUTS}")
        _require(spec.max_length >= 2, f"{key}.max_length", f"{spec.max_length} must be >= 2")
        _require(0.0 <= spec.dropout < 1.0, f"{key}.dropout", f"{spec.dropout} must be in [0, 1)")
        expected = set(architecture_keys(spec.kind))
        got = set(spec.model.keys())
        _require(got == expected, f"{key}.model", f"a {spec.kind} encoder needs keys "
                 f"{sorted(expected)}; missing {sorted(expected - got)}, unknown {sorted(got - expected)}")
        if spec.kind == "clip":
            _require(spec.max_length <= spec.model.max_positions, f"{key}.max_length",
                     f"{spec.max_length} exceeds the CLIP tower's {spec.model.max_positions} positions")


def _validate_init_from(cfg, phase: str) -> None:
    """Stage-chaining keys of `<phase>_train` (configs/training.py). Whether init_from exists is
    checked when the phase starts (training/init_from.py): a stage's config names its
    predecessor's workdir before that has trained, and `mgen plan` reads it without one."""
    t, key = cfg[f"{phase}_train"], f"{phase}_train"
    _require(not t.init_optimizer_state or bool(t.init_from), f"{key}.init_optimizer_state",
             f"needs {key}.init_from (the checkpoint whose optimizer state to carry over)")
    for axis in "thw":
        factor = t.init_position_stretch[axis]
        _require(factor >= 0, f"{key}.init_position_stretch.{axis}",
                 f"{factor} must be >= 0 (0: derived, 1: extend, 3: stretch x3)")
        _require(phase == "dit" or factor == 0, f"{key}.init_position_stretch.{axis}",
                 "the TAE has no position tables (dit_train only)")


def _validate_video_grid(data, dit, tae, tc: int, s: int) -> None:
    """The clips' shape against the TAE's compression, the patch size and the position tables."""
    pt, ph, pw = dit.patch_size
    _require(data.frames == 1 or (data.frames >= tc * pt and data.frames % (tc * pt) == 0),
             "data.frames", f"{data.frames} is neither 1 (images) nor a positive multiple of TAE "
             f"compression x patch size = {tc * pt}")
    for key, size, div in (("data.height", data.height, s * ph), ("data.width", data.width, s * pw)):
        _require(size >= div and size % div == 0, key,
                 f"{size} is not a positive multiple of TAE compression x patch size = {div}")
    grid = (latent_frames(tae, data.frames) // pt, data.height // s // ph, data.width // s // pw)
    for axis, n, limit in zip("thw", grid, dit.max_positions):
        _require(n <= limit, "dit.max_positions",
                 f"{n} latent {axis}-patches exceed the {axis} position table of {limit}")


def _validate_audio_clips(cfg) -> None:
    """The audio job's training clips fit the audio DiT's position table."""
    seconds = cfg.data.frames / cfg.data.fps
    frames = -(-round(seconds * cfg.dac_vae.sample_rate) // hop_length(cfg.dac_vae))
    _require(frames <= cfg.audio_dit.max_frames, "audio_dit.max_frames",
             f"{cfg.audio_dit.max_frames} latent frames are fewer than one training clip's "
             f"{frames} ({seconds:g} s at {latent_rate(cfg.dac_vae):g} Hz); longer audio is "
             "sampled by multi-diffusion, but training clips must fit")
