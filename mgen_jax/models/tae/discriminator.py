"""Patch-GAN discriminator for TAE training (pix2pix / taming-transformers' NLayerDiscriminator),
applied frame by frame: [B, T, H, W, 3] -> logits [B, T, h, w, 1], one per overlapping patch.

Normalisation: taming uses BatchNorm, whose running statistics are mutable state outside the
params pytree and whose batch statistics couple the real and fake halves of the batch. A pure
train step wants neither, so each frame's feature map is normalised on its own: GroupNorm with one
group (LayerNorm over H, W and C), which is defined at every batch size and for the 2x2 / 1x1 maps
of the last layers, where per-channel (instance) statistics would degenerate."""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.layers import Conv2D, GroupNorm, param


def _conv(in_ch: int, out_ch: int, stride: int, rngs: nnx.Rngs) -> Conv2D:
    conv = Conv2D(in_ch, out_ch, kernel=4, stride=stride, padding=1, rngs=rngs)
    # DCGAN init N(0, 0.02) as taming's weights_init: GAN training is tuned for it.
    conv.kernel = param(rngs, nnx.initializers.normal(0.02), (4, 4, in_ch, out_ch),
                        ("kernel", "kernel", "conv_in", "conv_out"))
    return conv


class NLayerDiscriminator(nnx.Module):
    """conv4x4/2 + LeakyReLU; (n_layers - 1) x [conv4x4/2 + norm + LeakyReLU] doubling channels up
    to 8 ndf; conv4x4/1 + norm + LeakyReLU; conv4x4/1 to one logit channel. Padding 1 throughout,
    so a side of S pixels ends as S / 2**n_layers - 2 patches (16 px with n_layers=2: 2x2)."""

    def __init__(self, *, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, rngs: nnx.Rngs):
        if n_layers < 1:
            raise ValueError(f"NLayerDiscriminator: n_layers must be >= 1, got {n_layers}")
        self.conv_in = _conv(in_channels, ndf, 2, rngs)  # not normalised
        self.convs, self.norms = nnx.List(), nnx.List()
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            self.convs.append(_conv(ndf * prev, ndf * mult, stride, rngs))
            self.norms.append(GroupNorm(ndf * mult, groups=1, rngs=rngs))
        self.head = _conv(ndf * mult, 1, 1, rngs)

    def __call__(self, video: jax.Array) -> jax.Array:
        """video [B, T, H, W, C] (or images [N, H, W, C]) -> patch logits [..., h, w, 1].
        Conv2D and GroupNorm treat every leading index as its own image: frames are independent."""
        h = jax.nn.leaky_relu(self.conv_in(video), 0.2)
        for conv, norm in zip(self.convs, self.norms):
            h = jax.nn.leaky_relu(norm(conv(h)), 0.2)
        return self.head(h).astype(jnp.float32)
