"""Diffusion-transformer (Movie Gen backbone) sub-configs."""
import ml_collections

DIT_PRESETS = {
    "tiny": dict(width=128, depth=4, num_heads=4, mlp_dim=352),
    # The paper's 30B backbone: 48 layers, width 6144, 48 heads of 128, SwiGLU FFN 16384.
    "30b": dict(width=6144, depth=48, num_heads=48, mlp_dim=16384),
}


def dit_config(size: str = "tiny") -> ml_collections.ConfigDict:
    if size not in DIT_PRESETS:
        raise ValueError(f"dit size {size!r} unknown; choose one of {sorted(DIT_PRESETS)}")
    cfg = dict(DIT_PRESETS[size])
    cfg.update(
        patch_size=(1, 2, 2),            # (t, h, w) patchify kernel = stride
        max_positions=(16, 32, 32),     # factorized t/h/w position-embedding table sizes (tokens)
        timestep_features=256,           # sinusoidal features fed to the timestep MLP
        norm_eps=1e-6,
        scan_layers=True,                # stack blocks and run them with lax.scan
        remat="none",                    # remat policy name: none | full
        attention="xla",                 # attention backend name (models/attention)
    )
    return ml_collections.ConfigDict(cfg)
