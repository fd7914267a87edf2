"""LPIPS perceptual distance (Zhang et al. 2018; the `lpips` package, net='vgg', version 0.1),
channels-last: images [N, H, W, 3] in [-1, 1] -> one distance per image.

A loss network: its parameters come from a checkpoint (checkpointing/lpips_convert.py) and stay frozen; train
steps take them as an extra argument and never differentiate with respect to them."""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.layers import Conv2D, param

# torchvision vgg16().features: 3x3 conv + ReLU layers and 2x2 max-pools ("M").
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# torchvision `features` index of each conv (the ReLU after it is index + 1).
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
# LPIPS taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 = torchvision indices 3, 8, 15, 22, 29,
# i.e. the outputs of these convs (positions in VGG16_CONV_INDICES).
TAP_CONVS = (1, 3, 6, 9, 12)
TAP_CHANNELS = (64, 128, 256, 512, 512)
# lpips' ScalingLayer: ImageNet normalisation expressed for inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _max_pool(x: jax.Array) -> jax.Array:
    """2x2 stride-2 max-pool; odd sides are floored as torch's MaxPool2d(2, 2)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _unit_normalize(x: jax.Array, eps: float = 1e-10) -> jax.Array:
    """lpips' normalize_tensor, x / (||x||_C + eps), with a sqrt whose gradient at 0 is 0 rather
    than NaN (an all-zero ReLU feature vector is possible; its inputs get no gradient anyway)."""
    sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    norm = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
    return x / (norm + eps)


class LinLayer(nnx.Module):
    """lpips' NetLinLayer: (dropout, a no-op at eval) then a bias-free 1x1 conv to one channel."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        # lpips' learned weights are non-negative; a uniform init keeps an untrained model a
        # valid (if uncalibrated) distance.
        self.kernel = param(rngs, nnx.initializers.uniform(1.0 / channels), (1, 1, channels, 1),
                            ("kernel", "kernel", "conv_in", "conv_out"))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("nhwc,c->nhw", x, self.kernel[0, 0, :, 0])


class LPIPS(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.convs = nnx.List()
        in_ch = 3
        for item in VGG16_LAYOUT:
            if item != "M":
                self.convs.append(Conv2D(in_ch, item, kernel=3, padding=1, rngs=rngs))
                in_ch = item
        self.lins = nnx.List([LinLayer(c, rngs=rngs) for c in TAP_CHANNELS])

    def features(self, images: jax.Array) -> list[jax.Array]:
        """images [N, H, W, 3] in [-1, 1] -> the five tapped VGG feature maps."""
        h = (images.astype(jnp.float32) - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)
        taps, conv = [], 0
        for item in VGG16_LAYOUT:
            if item == "M":
                h = _max_pool(h)
                continue
            h = jax.nn.relu(self.convs[conv](h))
            if conv in TAP_CONVS:
                taps.append(h)
            conv += 1
        return taps

    def __call__(self, x0: jax.Array, x1: jax.Array) -> jax.Array:
        """x0, x1 [N, H, W, 3] in [-1, 1] (H, W >= 16: four pools) -> distances [N]."""
        if x0.shape != x1.shape or x0.ndim != 4 or x0.shape[-1] != 3:
            raise ValueError(f"LPIPS expects two [N, H, W, 3] images, got {x0.shape} and "
                             f"{x1.shape}")
        # Two trunk passes (not one on the concatenation) so the real images' pass needs no
        # backward. LPIPS(x, x) is 0 up to rounding (~1e-17): XLA may fuse the two channel-norm
        # reductions differently.
        total = jnp.zeros((x0.shape[0],), jnp.float32)
        for lin, f0, f1 in zip(self.lins, self.features(x0), self.features(x1)):
            diff = jnp.square(_unit_normalize(f0) - _unit_normalize(f1))
            total = total + jnp.mean(lin(diff), axis=(1, 2))
        return total


def lpips_video(model: LPIPS, v0: jax.Array, v1: jax.Array) -> jax.Array:
    """Videos [B, T, H, W, 3] -> per-frame distances [B, T] (frames folded into the batch)."""
    b, t = v0.shape[:2]
    return model(v0.reshape(b * t, *v0.shape[2:]), v1.reshape(b * t, *v1.shape[2:])).reshape(b, t)
