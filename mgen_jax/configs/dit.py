"""Diffusion-transformer (Movie Gen backbone) sub-configs."""
import ml_collections

from mgen_jax.configs.registries import DIT_PRESETS

# Transformer block families (models/dit/block.py): "llama" is Movie Gen's video block, "dit" the
# paper's DiT arm (Table 9) and Movie Gen Audio's block.
BLOCK_STYLES = ("llama", "dit")


def dit_config(size: str = "tiny") -> ml_collections.ConfigDict:
    cfg = dict(DIT_PRESETS.load(size))  # sizes: configs/registries.py
    cfg.update(
        size=size,                       # `--config.dit.size=1b` switches the whole preset
        patch_size=(1, 2, 2),            # (t, h, w) patchify kernel = stride
        # max_positions: factorized t/h/w position-embedding table sizes (tokens); see
        # checkpointing/position_growth.py for the paper's growth between training stages.
        timestep_features=256,           # sinusoidal features fed to the timestep MLP
        norm_eps=1e-6,
        # "llama": RMSNorm + SwiGLU, no biases (Movie Gen); "dit": LayerNorm + GELU MLP with
        # biases, the paper's Table 9 DiT arm (models/dit/block.py BLOCK_STYLES).
        block_style="llama",
        scan_layers=True,                # stack blocks and run them with lax.scan
        scan_unroll=1,                   # layers per scan iteration (debugging / overlap)
        # Registries (configs/registries.py) name the choices of the next three keys.
        remat="none",                    # REMAT_POLICIES (models/dit/remat.py)
        attention="xla",                 # ATTENTION_BACKENDS (models/attention/)
        context_parallel="all_gather",   # CONTEXT_PARALLEL: self-attention over 'context' 
    )
    return ml_collections.ConfigDict(cfg)
