"""Diffusion-transformer (Movie Gen backbone) sub-configs."""
import ml_collections

DIT_PRESETS = {
    "tiny": dict(width=128, depth=4, num_heads=4, mlp_dim=352, max_positions=(16, 32, 32)),
    # The scaling-study sizes below 30B are not published; 1b and 5b follow the ladder of the
    # public mindone reproduction (moviegen_spec.md section 2.4). Tables as in the 768 px stage.
    "1b": dict(width=1536, depth=24, num_heads=16, mlp_dim=4096, max_positions=(32, 96, 96)),
    "5b": dict(width=3072, depth=32, num_heads=24, mlp_dim=8192, max_positions=(32, 96, 96)),
    # The paper's 30B backbone: 48 layers, width 6144, 48 heads of 128, SwiGLU FFN 16384.
    "30b": dict(width=6144, depth=48, num_heads=48, mlp_dim=16384, max_positions=(32, 96, 96)),
}

REMAT_POLICIES = ("none", "full", "save_dots", "save_attention_out", "offload")
ATTENTION_BACKENDS = ("xla", "chunked", "cudnn", "splash", "auto")
CONTEXT_PARALLEL = ("all_gather", "ring", "ulysses")


def dit_config(size: str = "tiny") -> ml_collections.ConfigDict:
    if size not in DIT_PRESETS:
        raise ValueError(f"dit size {size!r} unknown; choose one of {sorted(DIT_PRESETS)}")
    cfg = dict(DIT_PRESETS[size])
    cfg.update(
        size=size,                       # `--config.dit.size=1b` switches the whole preset
        patch_size=(1, 2, 2),            # (t, h, w) patchify kernel = stride
        # max_positions: factorized t/h/w position-embedding table sizes (tokens); see
        # models/dit/position_growth.py for the paper's growth between training stages.
        timestep_features=256,           # sinusoidal features fed to the timestep MLP
        norm_eps=1e-6,
        scan_layers=True,                # stack blocks and run them with lax.scan
        scan_unroll=1,                   # layers per scan iteration (debugging / overlap)
        remat="none",                    # one of REMAT_POLICIES (models/dit/remat.py)
        attention="xla",                 # one of ATTENTION_BACKENDS (models/attention)
        context_parallel="all_gather",   # self-attention over the 'context' mesh axis
    )
    return ml_collections.ConfigDict(cfg)
