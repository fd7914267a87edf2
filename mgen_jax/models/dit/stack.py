"""A stack of transformer blocks: created with parameters stacked on a leading 'layers' axis, run
with lax.scan over that axis (named remat policy, unroll factor) or, for debugging
(`scan_layers=False`), the same stacked weights in a Python loop. Shared by the video DiT and the
audio DiT, so both scan, rematerialise and shard their layers the same way."""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.dit.block import TransformerBlock
from mgen_jax.models.dit.remat import apply_remat


def stack_blocks(cfg, dtype=jnp.float32, *, rngs: nnx.Rngs) -> TransformerBlock:
    """cfg.depth blocks with parameters stacked on a leading 'layers' axis."""
    keys = jax.random.split(rngs.params(), cfg.depth)

    @nnx.vmap(in_axes=0, out_axes=0)
    def create(key):
        return TransformerBlock(cfg, dtype=dtype, rngs=nnx.Rngs(params=key))

    blocks = create(keys)
    for _, var in nnx.iter_graph(blocks):
        if isinstance(var, nnx.Variable):
            var.set_metadata("logical_axes", ("layers",) + tuple(var.get_metadata()["logical_axes"]))
    return blocks


def run_blocks(blocks: TransformerBlock, cfg, x: jax.Array, *args) -> jax.Array:
    """x through every stacked block: block(x, *args) per layer, as cfg.scan_layers,
    cfg.scan_unroll and cfg.remat say."""
    graphdef, stacked = nnx.split(blocks)

    def body(carry, layer_state):
        return nnx.merge(graphdef, layer_state)(carry, *args), None

    body = apply_remat(body, cfg.remat)
    if cfg.scan_layers:
        x, _ = jax.lax.scan(body, x, stacked, unroll=cfg.scan_unroll)
    else:
        for i in range(cfg.depth):
            x, _ = body(x, jax.tree.map(lambda a: a[i], stacked))
    return x
