"""The PyTorch peer of `mgen bench dit` (benchmarks/wan_peer.py) at the QUICK shape: it builds
diffusers' WanTransformer3DModel of our size, runs real train steps, and its analytic FLOPs and
parameter count match hand counts written out here. No timing thresholds: measured, not asserted.
"""
import math
import sys

import pytest

from mgen_jax.benchmarks.dit_step import QUICK, bench_config
from mgen_jax.benchmarks.wan_peer import PeerShape, build_wan_peer, peer_shape, wan_peer_bench


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _hand_count_flops(W, F, D, N, L, B, C, patch, text_dim, freq_dim):
    """Every matmul of one forward pass, 2·rows·in·out each (attention: 2·Lq·Lk·W per
    product), times 3 for forward + backward, times the batch."""
    p = C * math.prod(patch)
    per_layer = (
        4 * 2 * N * W * W          # self-attention q, k, v, o
        + 2 * 2 * N * W * W        # cross-attention q, o (video tokens)
        + 2 * 2 * L * W * W        # cross-attention k, v (text tokens)
        + 2 * 2 * N * N * W        # self-attention QK^T and PV
        + 2 * 2 * N * L * W        # cross-attention QK^T and PV
        + 2 * N * W * F + 2 * N * F * W)  # GELU FFN: up, down
    forward = (D * per_layer
               + 2 * N * p * W + 2 * N * W * p                   # patch embed, proj_out
               + 2 * L * text_dim * W + 2 * L * W * W            # text Linear-GELU-Linear
               + 2 * freq_dim * W + 2 * W * W + 2 * W * 6 * W)   # timestep MLP, time_proj
    return 3 * B * forward


def _hand_count_params(W, F, D, C, patch, text_dim, freq_dim):
    """Weights and biases of WanTransformer3DModel without image conditioning."""
    p = C * math.prod(patch)
    attention = 4 * (W * W + W) + 2 * W          # q, k, v, o + RMSNorm on q and k
    block = (2 * attention + 2 * W                # self, cross; affine cross-attention norm
             + (W * F + F) + (F * W + W)          # FFN
             + 6 * W)                             # scale_shift_table
    return (p * W + W                                         # patch embedding (Conv3d)
            + (freq_dim * W + W) + (W * W + W) + (W * 6 * W + 6 * W)   # time MLP, time_proj
            + (text_dim * W + W) + (W * W + W)                # text projection
            + D * block
            + (W * p + p) + 2 * W)                            # proj_out, final scale_shift


@pytest.mark.slow  # builds the torch model and runs train steps
def test_wan_peer_quick_shape():
    import torch  # the test extra installs torch and diffusers: a missing one fails here

    cfg = bench_config(QUICK)
    shape = peer_shape(cfg)
    d = QUICK["dit"]
    # Our latents (batch, T, H, W, z_channels) and the tiny encoders' 24 + 24 + 8 tokens of 64.
    assert shape.latent_shape == (2, 1, 4, 4, cfg.tae.z_channels)
    assert (shape.text_tokens, shape.text_dim) == (56, 64)
    assert shape.tokens_per_sample == 4

    r = wan_peer_bench(shape, steps=2, warmup=1, matmul_peak_flops_per_s=1e9)
    assert r["available"] is True
    assert r["torch"] == torch.__version__ and r["diffusers"]
    step = r["step"]
    assert all(_positive(step[k]) for k in ("step_seconds", "step_seconds_min",
                                             "step_seconds_max", "step_cpu_seconds"))
    assert step["step_seconds_min"] <= step["step_seconds"] <= step["step_seconds_max"]
    assert len(step["step_seconds_all"]) == step["steps_timed"] == 2
    assert math.isfinite(step["final_loss"])
    # The velocity comes back in the latents' (Wan) layout: batch, C, T, H, W.
    b, t, h, w, c = shape.latent_shape
    assert step["output_shape"] == step["input_shape"] == [b, c, t, h, w]

    flops = _hand_count_flops(d["width"], d["mlp_dim"], d["depth"], N=4, L=56, B=2, C=c,
                              patch=d["patch_size"], text_dim=64, freq_dim=256)
    assert r["model_flops_per_step"] == flops
    assert sum(r["model_flops_parts"].values()) == flops
    assert r["achieved_model_flops_per_s"] == pytest.approx(flops / step["step_seconds"])
    assert r["fraction_of_matmul_peak"] == pytest.approx(r["achieved_model_flops_per_s"] / 1e9)

    model = build_wan_peer(shape)
    assert model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert r["num_params"] == sum(p.numel() for p in model.parameters())
    assert r["num_params"] == _hand_count_params(d["width"], d["mlp_dim"], d["depth"], c,
                                                 d["patch_size"], 64, 256)


def test_wan_peer_unavailable_without_diffusers(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now fails
    shape = PeerShape(width=64, depth=2, num_heads=4, mlp_dim=128, patch_size=(1, 2, 2),
                      latent_shape=(2, 1, 4, 4, 16), text_tokens=56, text_dim=64)
    r = wan_peer_bench(shape, steps=1, warmup=0)
    assert r["available"] is False
    assert "diffusers" in r["error"]
