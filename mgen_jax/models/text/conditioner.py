"""Movie Gen's text conditioner: each encoder's output -> its own Linear + LayerNorm to the model
width, then all encoders concatenated along the sequence (with their masks) for cross-attention.

Inputs are dicts keyed by encoder name (cfg.text.encoders); leading dims are free, so the same
module serves [B, L, D] batches and packed [B, S, L, D] rows.

The text sequence is laid out whole on every device ('act_text' maps to no mesh axis): the pieces
have unequal lengths (Movie Gen's 300 + 256 + 100), and a sequence split over the context axis
would cut the concatenation across shard boundaries, which XLA lowers to per-token
collective-permutes; every context shard's queries attend to all of it anyway."""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.layers import Dense, LayerNorm
from mgen_jax.parallel.logical_rules import constrain


class TextProjection(nnx.Module):
    def __init__(self, text_dim: int, width: int, *, rngs: nnx.Rngs):
        self.proj = Dense(text_dim, width, axes=("mlp", "embed"), rngs=rngs)
        self.norm = LayerNorm(width, rngs=rngs)

    def __call__(self, text: jax.Array) -> jax.Array:
        return self.norm(self.proj(text))


def _text_layout(x: jax.Array) -> jax.Array:
    """[B, (S,) L, W]: the batch split as activations are, the text sequence whole."""
    return constrain(x, ("act_batch",) + (None,) * (x.ndim - 3) + ("act_text", "act_embed"))


class TextConditioner(nnx.Module):
    """text {name: [..., L_i, D_i]}, mask {name: [..., L_i]} -> context [..., sum L_i, width],
    mask [..., sum L_i] (bool); encoders in the order of `text_dims`."""

    def __init__(self, text_dims: tuple[tuple[str, int], ...], width: int, *, rngs: nnx.Rngs):
        self.names = tuple(name for name, _ in text_dims)
        self.projections = nnx.Dict({name: TextProjection(dim, width, rngs=rngs)
                                     for name, dim in text_dims})

    def __call__(self, text: dict, mask: dict) -> tuple[jax.Array, jax.Array]:
        missing = sorted(set(self.names) - set(text))
        if missing:
            raise ValueError(f"text conditioner: no embeddings for encoders {missing} "
                             f"(got {sorted(text)})")
        context = jnp.concatenate(
            [_text_layout(self.projections[n](text[n])) for n in self.names], axis=-2)
        joint = jnp.concatenate([mask[n].astype(bool) for n in self.names], axis=-1)
        return _text_layout(context), joint


def drop_text(key, text: dict, mask: dict, null_text: dict, null_mask: dict, rate: float,
              encoder_rates: dict | None = None) -> tuple[dict, dict]:
    """Classifier-free-guidance dropout on a batch of prompts, per encoder name: token ids [B, L]
    or embeddings [B, L, D] (with masks [B, L]) are replaced by that encoder's null (the empty
    prompt's ids or embedding, [L(, D)]). With probability `rate` an example loses all encoders
    at once (the unconditional branch CFG needs); `encoder_rates[name]` additionally drops one
    encoder alone."""
    names = sorted(text)
    batch = text[names[0]].shape[0]
    keys = jax.random.split(key, len(names) + 1)
    joint = jax.random.bernoulli(keys[0], rate, (batch,))
    out_text, out_mask = {}, {}
    for k, name in zip(keys[1:], names):
        drop = joint
        if encoder_rates and encoder_rates.get(name, 0.0) > 0:
            drop = drop | jax.random.bernoulli(k, encoder_rates[name], (batch,))
        pick = lambda a, null: jnp.where(drop.reshape((-1,) + (1,) * (a.ndim - 1)),
                                         jnp.asarray(null, a.dtype)[None], a)
        out_text[name] = pick(text[name], null_text[name])
        out_mask[name] = pick(mask[name], null_mask[name])
    return out_text, out_mask
