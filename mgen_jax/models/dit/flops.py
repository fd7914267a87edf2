"""Analytic model FLOPs of one DiT train step (the numerator of MFU).

Conventions (reference/perf_anchors.md section 4): a matmul [A,B]x[B,C] costs 2ABC; a train step
is forward + backward = 3x forward, so a weight matrix of P elements applied to T tokens costs
6·P·T. Bidirectional attention costs 12·B·Lq·Lk·W per layer (scores and PV, forward+backward),
never halved. Only matmuls count: norms, softmax, adaLN arithmetic and the optimizer are left out
(they are the "overhead" a compiled count adds). The text embeddings and the TAE latents arrive
precomputed, so no encoder FLOPs are counted. Rematerialisation is hardware work, not model work:
it is reported separately (`remat_recompute`), never added to the total.

Per sample, with N video tokens, L text tokens, width W, FFN width F, patch volume p, depth D:
    self-attention q/k/v/o      6 · 4W²  · N · D
    cross-attention q/o         6 · 2W²  · N · D       (queries are video tokens)
    cross-attention k/v         6 · 2W²  · L · D       (keys/values are text tokens)
    SwiGLU FFN                  6 · 3WF  · N · D
    patch embed / final proj    6 · pW   · N  (each)
    text projection             6 · D_text·W · L
    timestep MLP + adaLN        6 · (f·W + W² + 6W² + 2W²)   (once per sample)
    self-attention core         12 · N² · W · D
    cross-attention core        12 · N · L · W · D
"""
from mgen_jax.configs.tae import latent_frames, spatial_compression
from mgen_jax.configs.text import text_shapes

NUM_MODULATIONS = 6  # shift/scale/gate for self-attention and FFN (models/dit/block.py)


def token_grid(cfg) -> tuple[int, int, int]:
    """(t, h, w) DiT tokens of one sample of the experiment's data shape."""
    s = spatial_compression(cfg.tae)
    pt, ph, pw = cfg.dit.patch_size
    return (latent_frames(cfg.tae, cfg.data.frames) // pt, cfg.data.height // s // ph,
            cfg.data.width // s // pw)


def ffn_matrices(dit_cfg) -> int:
    """Weight matrices of one block's FFN: SwiGLU's gate, up and down (llama); the DiT arm's
    GELU MLP has up and down."""
    return 2 if dit_cfg.get("block_style", "llama") == "dit" else 3


def dit_train_flops(cfg, batch_size: int | None = None, grid: tuple | None = None) -> dict:
    """Model FLOPs of one train step of the DiT on cfg's data shape (or a (t, h, w) token grid:
    one bucket's), by component.

    Returns {"parts": {name: flops}, "total": flops, "tokens_per_sample", "text_tokens",
    "batch_size", "remat_recompute": {...}} (FLOPs for the whole global batch)."""
    d = cfg.dit
    b = cfg.dit_train.batch_size if batch_size is None else batch_size
    gt, gh, gw = token_grid(cfg) if grid is None else grid
    n = gt * gh * gw
    shapes = text_shapes(cfg.text)  # {encoder: (tokens, dim)}, concatenated for cross-attention
    length = sum(n for n, _ in shapes.values())
    w, f, depth = d.width, d.mlp_dim, d.depth
    p = cfg.tae.z_channels * d.patch_size[0] * d.patch_size[1] * d.patch_size[2]

    parts = {
        "self_attention_qkvo": 6 * 4 * w * w * n * depth * b,
        "cross_attention_qo": 6 * 2 * w * w * n * depth * b,
        "cross_attention_kv": 6 * 2 * w * w * length * depth * b,
        "ffn": 6 * ffn_matrices(d) * w * f * n * depth * b,
        "patch_embed": 6 * p * w * n * b,
        "final_projection": 6 * w * p * n * b,
        "text_projection": 6 * sum(n * dim for n, dim in shapes.values()) * w * b,
        "conditioning": 6 * (d.timestep_features * w + w * w + NUM_MODULATIONS * w * w
                             + 2 * w * w) * b,
        "self_attention_core": 12 * b * n * n * w * depth,
        "cross_attention_core": 12 * b * n * length * w * depth,
    }
    total = sum(parts.values())
    return {
        "parts": {k: float(v) for k, v in parts.items()},
        "total": float(total),
        "tokens_per_sample": n,
        "token_grid": [gt, gh, gw],
        "text_tokens": length,
        "batch_size": b,
        "attention_fraction": float((parts["self_attention_core"]
                                     + parts["cross_attention_core"]) / total),
        "remat_recompute": remat_recompute(parts, d.remat),
    }


def remat_recompute(parts: dict, policy: str) -> dict:
    """Extra forward FLOPs the remat policy implies in the backward pass (for information: this
    is hardware work, counted in HFU, not MFU). Only the scanned blocks are rematerialised."""
    forward = {k: v / 3 for k, v in parts.items()}  # a train step is 3x forward
    block = ("self_attention_qkvo", "cross_attention_qo", "cross_attention_kv", "ffn",
             "self_attention_core", "cross_attention_core")
    if policy == "none":
        extra, note = 0, "nothing recomputed"
    elif policy == "full":
        extra, note = sum(forward[k] for k in block), "one more forward of every block"
    elif policy == "save_dots":
        # Weight matmuls (no batch dims) are saved; attention einsums (batched) are recomputed.
        extra = forward["self_attention_core"] + forward["cross_attention_core"]
        note = "attention score/PV einsums recomputed, weight matmuls saved"
    elif policy in ("save_attention_out", "offload"):
        # The self-attention output is saved: everything else in the block is recomputed, and
        # its backward still needs the scores (about half the attention core) again.
        extra = sum(forward[k] for k in block) - forward["self_attention_core"] / 2
        note = "block recomputed except the self-attention PV product (approximate)"
    elif policy == "save_splash_residuals":
        # The splash kernel's output and log-sum-exp are saved: the block is recomputed but the
        # flash forward (its backward recomputes the scores itself, as without remat). Other
        # attention backends name no residuals: there it is "full".
        extra = sum(forward[k] for k in block) - forward["self_attention_core"]
        note = "block recomputed except the splash flash forward (splash only; else as full)"
    else:
        raise ValueError(f"remat policy {policy!r} unknown")
    total = sum(parts.values())
    return {"policy": policy, "flops": float(extra), "hardware_over_model": float(1 + extra / total),
            "note": note}
