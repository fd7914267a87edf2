"""CLIP / MetaCLIP vision tower in Flax NNX, numerically equal to transformers'
`CLIPVisionModelWithProjection` (and `CLIPVisionModel` when the config has no projection).

Patch embedding (a bias-free conv with stride = kernel = patch size), a learned class token and
learned absolute positions, a pre-LayerNorm, the CLIP encoder layers shared with the text tower
(models/text/clip_text.py: pre-LN blocks, biased q/k/v/out projections, fc1 -> GELU or QuickGELU
-> fc2; here attention is unmasked), then the post-LayerNorm of the class token (the pooled
output) and the bias-free visual projection (the image embedding).

Images are channels-last [B, H, W, C] with H = W = image_size, already normalised;
`frame_embeddings` takes uint8 video frames and does the resizing and normalisation.

    cfg = clip_vision_config("metaclip_h14")
    model = CLIPVisionTransformer(cfg, rngs=nnx.Rngs(0))
    out = model(pixels)        # out.last_hidden_state [B, 1 + N, D], .pooled [B, D],
                               # .image_embeds [B, P] (None without a projection)
    emb = frame_embeddings(model, frames)    # uint8 [B, T, H, W, 3] -> [B, T, P]
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.layers import Dense, LayerNorm, param
from mgen_jax.models.text.clip_text import ACTIVATIONS, CLIPEncoderLayer


FRAME_FEATURES = ("image_embeds", "patch_tokens")


def check_clip_vision_config(cfg) -> None:
    if cfg.get("features", "image_embeds") not in FRAME_FEATURES:
        raise ValueError(f"vision.features={cfg.features!r}: choose one of {FRAME_FEATURES}")
    if cfg.hidden_act not in ACTIVATIONS:
        raise ValueError(f"CLIP vision hidden_act={cfg.hidden_act!r}: supported are "
                         f"{ACTIVATIONS}")
    if cfg.hidden_size % cfg.num_heads:
        raise ValueError(f"CLIP vision hidden_size={cfg.hidden_size} is not divisible by "
                         f"num_heads={cfg.num_heads}")
    if not 0 < cfg.patch_size <= cfg.image_size:
        raise ValueError(f"CLIP vision patch_size={cfg.patch_size} must be in "
                         f"[1, image_size={cfg.image_size}]")
    for key in ("image_mean", "image_std"):
        if len(cfg[key]) != cfg.num_channels:
            raise ValueError(f"CLIP vision {key}={tuple(cfg[key])} needs one value per channel "
                             f"(num_channels={cfg.num_channels})")


def num_patches_per_side(cfg) -> int:
    """Patches along each side; like the strided conv it is, trailing pixels that do not fill a
    whole patch are dropped."""
    return cfg.image_size // cfg.patch_size


class CLIPVisionOutput(NamedTuple):
    last_hidden_state: jax.Array  # [B, 1 + N, D]: class token then patches, before post-LN
    pooled: jax.Array             # [B, D]: post-LayerNorm of the class token
    image_embeds: jax.Array | None  # [B, P]: projected pooled output; None without projection


class CLIPVisionTransformer(nnx.Module):
    """pixels [B, image_size, image_size, C] (normalised) -> CLIPVisionOutput."""

    def __init__(self, cfg, *, dtype=jnp.float32, rngs: nnx.Rngs):
        check_clip_vision_config(cfg)
        d, p = cfg.hidden_size, cfg.patch_size
        self.class_embedding = param(rngs, nnx.initializers.normal(0.02), (d,), ("embed",))
        # HWIO like layers.Conv2D, but CLIP's patch embedding has no bias.
        self.patch_embedding = param(rngs, nnx.initializers.lecun_normal(),
                                     (p, p, cfg.num_channels, d),
                                     ("kernel", "kernel", "conv_in", "embed"))
        num_positions = num_patches_per_side(cfg) ** 2 + 1
        self.position_embedding = param(rngs, nnx.initializers.normal(0.02), (num_positions, d),
                                        ("table", "embed"))
        self.pre_layernorm = LayerNorm(d, eps=cfg.layer_norm_eps, rngs=rngs)
        self.layers = nnx.List([CLIPEncoderLayer(cfg, dtype=dtype, rngs=rngs)
                                for _ in range(cfg.num_layers)])
        self.post_layernorm = LayerNorm(d, eps=cfg.layer_norm_eps, rngs=rngs)
        self.visual_projection = (Dense(d, cfg.projection_dim, axes=("embed", None),
                                        use_bias=False, dtype=dtype, rngs=rngs)
                                  if cfg.projection_dim else None)
        self.image_size, self.patch_size = int(cfg.image_size), int(p)
        self.image_mean = tuple(float(m) for m in cfg.image_mean)
        self.image_std = tuple(float(s) for s in cfg.image_std)
        self.dtype = dtype

    def __call__(self, pixels: jax.Array) -> CLIPVisionOutput:
        b, h, w, _ = pixels.shape
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(f"CLIP vision: images are {h}x{w}, the tower takes "
                             f"{self.image_size}x{self.image_size} (frame_embeddings resizes)")
        patches = jax.lax.conv_general_dilated(
            pixels.astype(self.dtype), self.patch_embedding[...].astype(self.dtype),
            (self.patch_size, self.patch_size), "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        patches = patches.reshape(b, -1, patches.shape[-1])  # row-major, as torch's flatten
        cls = jnp.broadcast_to(self.class_embedding[...].astype(self.dtype),
                               (b, 1, patches.shape[-1]))
        x = jnp.concatenate([cls, patches], axis=1) + self.position_embedding[...][None]
        x = self.pre_layernorm(x.astype(self.dtype))
        no_mask = jnp.zeros((), jnp.float32)  # every patch sees every patch
        for layer in self.layers:
            x = layer(x, no_mask)
        pooled = self.post_layernorm(x[:, 0])
        embeds = self.visual_projection(pooled) if self.visual_projection is not None else None
        return CLIPVisionOutput(x, pooled, embeds)


def preprocess_frames(frames: jax.Array, image_size: int, mean, std) -> jax.Array:
    """uint8 [..., H, W, C] -> float32 [..., image_size, image_size, C], CLIP-normalised.

    The whole frame is resized to a square (bicubic, antialiased when shrinking, as CLIP's
    processor resamples) rather than center-cropped as CLIP's processor does: for video-to-audio
    the sound source may sit at a frame's edge, and a crop would cut it off. Values are clipped
    back to [0, 1] after resizing, since bicubic overshoots at edges and the tower never saw
    pixels outside that range."""
    *lead, h, w, c = frames.shape
    x = frames.reshape(-1, h, w, c).astype(jnp.float32) / 255.0
    x = jax.image.resize(x, (x.shape[0], image_size, image_size, c), method="bicubic",
                         antialias=True)
    x = (jnp.clip(x, 0.0, 1.0) - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return x.reshape(*lead, image_size, image_size, c)


@nnx.jit
def frame_embeddings(model: CLIPVisionTransformer, frames: jax.Array) -> jax.Array:
    """Per-frame image embeddings of videos (Movie Gen Audio's video conditioning):
    uint8 frames [B, T, H, W, 3] of any size -> projected, unnormalised embeddings [B, T, P].
    Frames are resized and normalised by `preprocess_frames`; all B*T frames go through the
    tower as one batch, so split long videos along T for a large tower."""
    if model.visual_projection is None:
        raise ValueError("frame_embeddings needs a tower with a visual projection "
                         "(projection_dim > 0, i.e. a CLIPVisionModelWithProjection checkpoint)")
    b, t = frames.shape[:2]
    pixels = preprocess_frames(frames, model.image_size, model.image_mean, model.image_std)
    embeds = model(pixels.reshape(b * t, *pixels.shape[2:])).image_embeds
    return embeds.reshape(b, t, -1)


def video_feature_dim(cfg) -> int:
    """Width of frame_features' per-frame vector for a tower config."""
    if cfg.get("features", "image_embeds") == "patch_tokens":
        return num_patches_per_side(cfg) ** 2 * cfg.hidden_size
    return cfg.projection_dim


def frame_features(model: CLIPVisionTransformer, frames: jax.Array,
                   kind: str = "image_embeds") -> jax.Array:
    """uint8 frames [B, T, H, W, 3] of any size -> per-frame features [B, T, video_feature_dim]:
    the projected embeddings (`frame_embeddings`, unjitted: call it inside the caller's jit) or
    the patch tokens' last hidden states, flattened in raster order (configs/vision.py)."""
    if kind not in FRAME_FEATURES:
        raise ValueError(f"frame features {kind!r}: choose one of {FRAME_FEATURES}")
    if kind == "image_embeds" and model.visual_projection is None:
        raise ValueError("image_embeds need a tower with a visual projection (projection_dim > 0)")
    b, t = frames.shape[:2]
    pixels = preprocess_frames(frames, model.image_size, model.image_mean, model.image_std)
    out = model(pixels.reshape(b * t, *pixels.shape[2:]))
    features = out.image_embeds if kind == "image_embeds" else out.last_hidden_state[:, 1:]
    return features.reshape(b, t, -1)
