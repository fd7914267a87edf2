"""Analytic model FLOPs of one audio-DiT train step (the numerator of MFU), by the conventions of
models/dit/flops.py (matmuls only, train step = 3x forward, attention cores never halved, encoders
precomputed so not counted; remat reported apart by the same `remat_recompute`).

Per sample, with N latent frames, L text tokens, width W, FFN width F, depth D, C latent
channels, visual features of D_v and text of D_t dims:
    self-attention q/k/v/o      6 · 4W²  · N · D
    cross-attention q/o         6 · 2W²  · N · D
    cross-attention k/v         6 · 2W²  · L · D
    GELU MLP                    6 · 2WF  · N · D       (two matrices, not SwiGLU's three)
    input projection            6 · (2C + 1)·W · N     (x_t, context and mask concatenated)
    video projection            6 · D_v·W · N          (features resampled to the N frames first)
    final projection            6 · W·C  · N
    text projection             6 · D_t·W · L
    timestep MLP + adaLN        6 · (f·W + W² + 6W² + 2W²)   (once per sample)
    self-attention core         12 · N² · W · D
    cross-attention core        12 · N · L · W · D
"""
from mgen_jax.models.dit.flops import NUM_MODULATIONS, remat_recompute


def audio_dit_train_flops(cfg, *, frames: int, text_tokens: int, text_dim: int, video_dim: int,
                          latent_channels: int, batch_size: int) -> dict:
    """Model FLOPs of one train step of the audio DiT (cfg: configs/audio_dit.py) on a global
    batch of `batch_size` clips of `frames` latent frames. Returns {"parts", "total",
    "per_frame" (FLOPs per latent frame, i.e. per token), "attention_fraction",
    "remat_recompute"}."""
    w, f, depth, b = cfg.width, cfg.mlp_dim, cfg.depth, batch_size
    n, length, c = frames, text_tokens, latent_channels
    parts = {
        "self_attention_qkvo": 6 * 4 * w * w * n * depth * b,
        "cross_attention_qo": 6 * 2 * w * w * n * depth * b,
        "cross_attention_kv": 6 * 2 * w * w * length * depth * b,
        "ffn": 6 * 2 * w * f * n * depth * b,
        "input_projection": 6 * (2 * c + 1) * w * n * b,
        "video_projection": 6 * video_dim * w * n * b,
        "final_projection": 6 * w * c * n * b,
        "text_projection": 6 * text_dim * w * length * b,
        "conditioning": 6 * (cfg.timestep_features * w + w * w + NUM_MODULATIONS * w * w
                             + 2 * w * w) * b,
        "self_attention_core": 12 * b * n * n * w * depth,
        "cross_attention_core": 12 * b * n * length * w * depth,
    }
    total = sum(parts.values())
    return {
        "parts": {k: float(v) for k, v in parts.items()},
        "total": float(total),
        "per_frame": float(total / (b * n)),
        "frames_per_sample": n,
        "text_tokens": length,
        "batch_size": b,
        "attention_fraction": float((parts["self_attention_core"]
                                     + parts["cross_attention_core"]) / total),
        "remat_recompute": remat_recompute(parts, cfg.remat),
    }
