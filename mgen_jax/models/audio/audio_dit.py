"""Movie Gen Audio's flow-matching transformer (spec 6.4): noisy DAC-VAE latents at 25 Hz + t +
audio context + per-frame video features + text -> velocity.

    x = Linear(concat[x_t, context * mask, mask])   audio context, channel-wise (for extension
                                                     and infilling)
    f = pos[:T] + Linear(resample(video, T))         frame conditioning, one vector per audio frame
    x = DiT blocks(x, f, adaLN(t), LN(Linear(t5)))   the project's TransformerBlock, block_style
                                                     "dit"; f is added at every block's input, as
                                                     the video DiT adds its positions
    v = Linear(LN(x) * (1 + scale) + shift)          zero-initialised: a fresh model predicts 0

The paper says "DiT, not the Llama block" with one shared MLP giving the 6 modulation parameters
plus per-layer biases: the timestep MLP -> SiLU -> one Linear(W, 6W) for all layers, and each
block's learned (6, W) table (models/dit/block.py). Its silences, filled here: positions are a
learned 1D table over latent frames (as the video DiT's tables); visual features are resampled by
linear interpolation in time (or nearest; `resample_frames`) and added at every block rather than
once at the input; T5 reaches the blocks through the video DiT's text conditioner (Linear +
LayerNorm to the width, models/text/conditioner.py) and their cross-attention.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.dit.block import NUM_MODULATIONS, RESIDUAL, block_norm
from mgen_jax.models.dit.embeddings import TimestepEmbedder
from mgen_jax.models.dit.stack import run_blocks, stack_blocks
from mgen_jax.models.layers import Dense, param
from mgen_jax.models.text.conditioner import TextConditioner
from mgen_jax.parallel.logical_rules import constrain

RESAMPLE_MODES = ("linear", "nearest")


def resample_frames(features: jax.Array, num_frames: int, mode: str = "linear") -> jax.Array:
    """Per-frame features [B, T_v, D] spanning a clip -> [B, num_frames, D] spanning the same clip.

    Frames are sampled at their centres ((j + 0.5) / num_frames of the clip), the source frames
    likewise: "linear" interpolates between the two nearest source frames (clamped at the ends),
    "nearest" takes the source frame whose interval holds the centre. Equal counts return the
    input. jax.image.resize does exactly this (without antialiasing: a visual embedding is not a
    signal to low-pass)."""
    if mode not in RESAMPLE_MODES:
        raise ValueError(f"video_resample {mode!r} unknown; choose one of "
                         f"{', '.join(RESAMPLE_MODES)}")
    b, _, d = features.shape
    return jax.image.resize(features, (b, num_frames, d), mode, antialias=False)


class AudioPositions(nnx.Module):
    """A learned embedding per latent frame index."""

    def __init__(self, max_frames: int, width: int, *, rngs: nnx.Rngs):
        self.table = param(rngs, nnx.initializers.normal(0.02), (max_frames, width),
                           ("table", "embed"))

    def __call__(self, frames: int) -> jax.Array:
        if frames > self.table.shape[0]:
            raise ValueError(f"audio DiT: {frames} latent frames exceed the position table "
                             f"(audio_dit.max_frames={self.table.shape[0]}); generate longer "
                             "audio by multi-diffusion (flow/multi_diffusion.py)")
        return self.table[...][:frames]


class AudioDiffusionTransformer(nnx.Module):
    def __init__(self, cfg, *, latent_channels: int, video_dim: int,
                 text_dims: tuple[tuple[str, int], ...], dtype=jnp.float32, rngs: nnx.Rngs):
        """cfg: configs/audio_dit.py; latent_channels: the DAC-VAE's (128 in the paper);
        video_dim: the per-frame visual features' (MetaCLIP 1024); text_dims: ((encoder, dim),
        ...), Movie Gen Audio's is (("t5", 768),)."""
        w = cfg.width
        self.cfg, self.latent_channels, self.dtype = cfg, latent_channels, dtype
        # x_t, the masked clean context and the mask, concatenated channel-wise.
        self.input_proj = Dense(2 * latent_channels + 1, w, axes=("mlp", "embed"), dtype=dtype,
                                rngs=rngs)
        self.positions = AudioPositions(cfg.max_frames, w, rngs=rngs)
        self.video_proj = Dense(video_dim, w, axes=("mlp", "embed"), dtype=dtype, rngs=rngs)
        self.timestep = TimestepEmbedder(cfg.timestep_features, w, rngs=rngs)
        # The shared modulation MLP's last layer; zero init: every block starts as identity.
        self.modulation = Dense(w, NUM_MODULATIONS * w, axes=("embed", "mlp"),
                                kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.conditioner = TextConditioner(tuple(text_dims), w, rngs=rngs)
        self.blocks = stack_blocks(cfg, dtype, rngs=rngs)
        self.final_norm = block_norm(cfg, w, affine=False, rngs=rngs)
        self.final_modulation = Dense(w, 2 * w, axes=("embed", "mlp"),
                                      kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.final_proj = Dense(w, latent_channels, axes=("embed", "mlp"),
                                kernel_init=nnx.initializers.zeros, rngs=rngs)

    def frame_conditioning(self, frames: int, video: jax.Array | None) -> jax.Array:
        """Positions plus the projected visual features of each audio frame: [1 or B, T, W]."""
        pos = self.positions(frames)[None]
        if video is None:  # audio (and text) only
            return pos
        video = resample_frames(video, frames, self.cfg.video_resample)
        video = constrain(video, ("act_batch", "act_seq", "act_embed"))
        return constrain(pos + self.video_proj(video), RESIDUAL)

    def __call__(self, x_t: jax.Array, t: jax.Array, text: dict, text_mask: dict, *,
                 video: jax.Array | None = None, context: jax.Array | None = None,
                 context_mask: jax.Array | None = None) -> jax.Array:
        """x_t [B, T, C] noisy latents; t [B] in [0, 1]; text {name: [B, L, D]}, text_mask
        {name: [B, L]}; video [B, T_v, D_v] per-frame visual features over the same clip (any
        T_v: resampled to T) or None; context [B, T, C] clean latents and context_mask
        [B, T, 1] (1 = known frame; the latents of other frames are zeroed here), or None
        (generation: nothing known) -> velocity [B, T, C] float32."""
        b, frames, _ = x_t.shape
        if context is None:
            context = jnp.zeros_like(x_t)
            context_mask = jnp.zeros((b, frames, 1), x_t.dtype)
        known = context_mask.astype(x_t.dtype)
        inputs = jnp.concatenate([x_t, context.astype(x_t.dtype) * known, known], axis=-1)
        x = constrain(self.input_proj(inputs), RESIDUAL)
        t_emb = self.timestep(t)
        modulation = self.modulation(jax.nn.silu(t_emb)).reshape(b, 1, NUM_MODULATIONS, -1)
        text_context, joint_mask = self.conditioner(text, text_mask)
        x = run_blocks(self.blocks, self.cfg, x, self.frame_conditioning(frames, video),
                       modulation.astype(jnp.float32), text_context.astype(self.dtype), joint_mask)
        shift, scale = jnp.split(self.final_modulation(jax.nn.silu(t_emb))[:, None], 2, axis=-1)
        x = self.final_norm(x) * (1 + scale) + shift
        return self.final_proj(x).astype(jnp.float32)
