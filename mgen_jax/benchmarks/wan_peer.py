"""The PyTorch peer of `mgen bench dit`: diffusers' WanTransformer3DModel of the same size.

Our DiT step is only fast or slow relative to something: the same-process matmul peak is one
yardstick, an established implementation of a comparable video DiT on the same cores in the same
run is the other. The peer is `diffusers.WanTransformer3DModel` (Wan 2.1's text-to-video DiT,
no image conditioning) built with our bench model's width, depth, heads, FFN width, patch size,
latent channels, text width and token counts, random float32 weights, in train mode. A train step
is what ours does: forward, MSE against a random target, backward, global-norm clip, AdamW step,
zero_grad; timed after warm-up (median of several steps), eager PyTorch (no torch.compile), with
torch's intra-op threads set to the CPUs this process may use so both frameworks get the same
cores.

The two models are not FLOP-identical, so the comparison reports both analytic counts
(matmuls only, train step = 3x forward, the conventions of models/dit/flops.py) and compares time
per FLOP as well as raw step time. The differences, all counted:
  * FFN: Wan's is GELU with 2 matrices (2·W·F per token), ours is SwiGLU with 3 (3·W·F);
  * text: Wan projects one text_dim-wide stream with Linear -> GELU -> Linear (text_dim·W + W²
    per text token), ours projects each encoder linearly (dim_e·W per token of encoder e);
  * conditioning: Wan's timestep MLP feeds one shared 6W modulation (f·W + W² + 6W² per sample),
    ours adds a 2W final-layer modulation.
When our encoders differ in width, the peer's text_dim is their token-weighted mean, so the first
text projection costs what ours does.

Without torch or diffusers the bench still runs: `wan_peer_bench` returns
{"available": False, "error": ...}.
"""
import math
from dataclasses import asdict, dataclass

from mgen_jax.benchmarks.matmul_peak import median_seconds, step_time_fields, usable_cpus
from mgen_jax.configs.tae import latent_frames, spatial_compression
from mgen_jax.configs.text import text_shapes

FREQ_DIM = 256  # Wan's sinusoidal timestep features (also our cfg.dit.timestep_features default)


@dataclass(frozen=True)
class PeerShape:
    """What the peer is built and fed with; latent_shape is ours, (batch, T, H, W, C)."""
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    patch_size: tuple[int, int, int]
    latent_shape: tuple[int, int, int, int, int]
    text_tokens: int
    text_dim: int
    freq_dim: int = FREQ_DIM

    @property
    def tokens_per_sample(self) -> int:
        _, t, h, w, _ = self.latent_shape
        pt, ph, pw = self.patch_size
        return (t // pt) * (h // ph) * (w // pw)


def peer_shape(cfg, batch_size: int | None = None) -> PeerShape:
    """The peer's shape from our bench experiment config (the same latents and text tokens)."""
    d = cfg.dit
    b = cfg.dit_train.batch_size if batch_size is None else batch_size
    s = spatial_compression(cfg.tae)
    latent = (b, latent_frames(cfg.tae, cfg.data.frames), cfg.data.height // s,
              cfg.data.width // s, cfg.tae.z_channels)
    shapes = text_shapes(cfg.text).values()  # (tokens, dim) per encoder
    tokens = sum(n for n, _ in shapes)
    text_dim = round(sum(n * dim for n, dim in shapes) / tokens)  # equal widths: that width
    return PeerShape(width=d.width, depth=d.depth, num_heads=d.num_heads, mlp_dim=d.mlp_dim,
                     patch_size=tuple(d.patch_size), latent_shape=latent, text_tokens=tokens,
                     text_dim=text_dim)


def wan_train_flops(shape: PeerShape) -> dict:
    """Analytic matmul FLOPs of one peer train step (whole batch), by component; the part names
    are those of models/dit/flops.py where the two models have the same part."""
    b, w, f, depth = shape.latent_shape[0], shape.width, shape.mlp_dim, shape.depth
    n, length = shape.tokens_per_sample, shape.text_tokens
    p = shape.latent_shape[4] * math.prod(shape.patch_size)
    parts = {
        "self_attention_qkvo": 6 * 4 * w * w * n * depth * b,
        "cross_attention_qo": 6 * 2 * w * w * n * depth * b,
        "cross_attention_kv": 6 * 2 * w * w * length * depth * b,
        "ffn": 6 * 2 * w * f * n * depth * b,                  # GELU MLP: 2 matrices
        "patch_embed": 6 * p * w * n * b,                      # Conv3d, stride = kernel = patch
        "final_projection": 6 * w * p * n * b,
        "text_projection": 6 * (shape.text_dim * w + w * w) * length * b,  # Linear-GELU-Linear
        "conditioning": 6 * (shape.freq_dim * w + w * w + 6 * w * w) * b,  # timestep MLP + proj
        "self_attention_core": 12 * b * n * n * w * depth,
        "cross_attention_core": 12 * b * n * length * w * depth,
    }
    return {"parts": {k: float(v) for k, v in parts.items()}, "total": float(sum(parts.values())),
            "tokens_per_sample": n, "text_tokens": length, "batch_size": b}


def build_wan_peer(shape: PeerShape):
    """diffusers.WanTransformer3DModel of `shape`'s size, random float32 weights, train mode."""
    from diffusers import WanTransformer3DModel
    channels = shape.latent_shape[4]
    model = WanTransformer3DModel(
        patch_size=tuple(shape.patch_size), num_attention_heads=shape.num_heads,
        attention_head_dim=shape.width // shape.num_heads, in_channels=channels,
        out_channels=channels, text_dim=shape.text_dim, freq_dim=shape.freq_dim,
        ffn_dim=shape.mlp_dim, num_layers=shape.depth, image_dim=None, added_kv_proj_dim=None)
    return model.float().train()


def peer_inputs(shape: PeerShape, device, generator) -> dict:
    """Random latents (Wan's layout: batch, C, T, H, W), timesteps, text features and target."""
    import torch
    b, t, h, w, c = shape.latent_shape

    def normal(*size):
        return torch.randn(*size, generator=generator).to(device)

    return {"latents": normal(b, c, t, h, w),
            "timestep": (torch.rand(b, generator=generator) * 1000).to(device),
            "text": normal(b, shape.text_tokens, shape.text_dim),
            "target": normal(b, c, t, h, w)}


def wan_peer_step_timing(shape: PeerShape, *, steps: int, warmup: int, seed: int = 0,
                         lr: float = 1e-4, grad_clip: float | None = 1.0,
                         device: str = "cpu") -> dict:
    """Build the peer and time its train step (raises ImportError without torch / diffusers)."""
    import torch
    device = torch.device(device)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(usable_cpus())  # the cores XLA's CPU client uses too
    try:
        torch.manual_seed(seed)
        model = build_wan_peer(shape).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        batch = peer_inputs(shape, device, torch.Generator().manual_seed(seed))
        holder = {"loss": None, "output_shape": None}

        def one_step():
            out = model(batch["latents"], batch["timestep"], batch["text"],
                        return_dict=False)[0]
            loss = torch.nn.functional.mse_loss(out, batch["target"])
            loss.backward()
            if grad_clip is not None:  # ours clips by global norm too (training/optimizer.py)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            holder["output_shape"] = tuple(out.shape)
            holder["loss"] = loss.item()
            return holder["loss"]

        t = median_seconds(one_step, repeats=steps, warmup=warmup)
        num_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads_before)
    b, tt, h, w, c = shape.latent_shape
    return {
        "num_params": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "torch_num_threads": num_threads,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "input_shape": [b, c, tt, h, w],
        "output_shape": list(holder["output_shape"]),
        **step_time_fields(t, steps=steps, warmup=warmup),
        "final_loss": holder["loss"],
    }


def wan_peer_bench(shape: PeerShape, *, steps: int, warmup: int,
                   matmul_peak_flops_per_s: float | None = None,
                   grad_clip: float | None = 1.0, device: str = "cpu") -> dict:
    """The peer's figures for `mgen bench dit`, or {"available": False, "error"} when torch or
    diffusers cannot be imported (or torch cannot reach `device`, where ours ran: cpu / cuda)."""
    try:
        import diffusers
        import torch
    except Exception as err:  # ImportError, or a broken install failing on import
        return {"available": False, "error": f"{type(err).__name__}: {err}"}
    if device == "cuda" and not torch.cuda.is_available():
        return {"available": False, "error": f"torch {torch.__version__} sees no CUDA device"}
    step = wan_peer_step_timing(shape, steps=steps, warmup=warmup, grad_clip=grad_clip,
                                device=device)
    flops = wan_train_flops(shape)
    achieved = flops["total"] / step["step_seconds"]
    return {
        "available": True,
        "model": "diffusers.WanTransformer3DModel (eager, float32, train mode, no image input)",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "shape": {**asdict(shape), "tokens_per_sample": shape.tokens_per_sample},
        "num_params": step.pop("num_params"),
        "step": step,
        "optimizer": f"torch.optim.AdamW, clip_grad_norm_({grad_clip})"
                     if grad_clip is not None else "torch.optim.AdamW",
        "model_flops_per_step": flops["total"],
        "model_flops_parts": flops["parts"],
        "model_flops_source": "mgen_jax.benchmarks.wan_peer.wan_train_flops (matmuls only, "
                              "train step = 3x forward; GELU FFN of 2 matrices)",
        "achieved_model_flops_per_s": achieved,
        "fraction_of_matmul_peak": (achieved / matmul_peak_flops_per_s
                                    if matmul_peak_flops_per_s else None),
    }
