"""Position tables grow between stages as in the paper, and a grown model keeps its function on
the old grid (images keep their embeddings when the temporal table is added)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.configs.loading import load_config
from mgen_jax.configs.text import text_config, text_shapes
from mgen_jax.models.builders import build_dit
from mgen_jax.parallel.logical_rules import unsharded
from mgen_jax.checkpointing.position_growth import (grow_dit_checkpoint, grow_positions,
                                                 stretch_table)
from mgen_jax.training.optimizer import make_optimizer

BASE = ["dit.width=24", "dit.num_heads=2", "dit.mlp_dim=40", "dit.depth=2", "dit.scan_unroll=1",
        "tae.z_channels=4"]


def _model(max_positions):
    return build_dit(load_config("experiments/quickstart.py:smoke",
                                 BASE + [f"dit.max_positions={max_positions}", "data.frames=1"]))


def test_stretch_keeps_old_rows_at_multiples_and_interpolates_between():
    old = np.arange(12, dtype=np.float32).reshape(4, 3)
    new = stretch_table(old, 8)
    np.testing.assert_array_equal(new[::2], old)
    np.testing.assert_allclose(new[1], (old[0] + old[1]) / 2)
    np.testing.assert_array_equal(stretch_table(old, 12)[::3], old)


@pytest.mark.slow  # builds two DiTs
@unsharded()  # calls the DiT directly, deliberately without sharding constraints
def test_stage_growth_t2i_to_video_keeps_image_outputs():
    t2i, video = _model((1, 4, 4)), _model((6, 8, 8))
    params = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape),
                          t2i.init(jax.random.key(0)))
    grown = grow_positions(params, video.abstract_params())
    assert grown["positions"]["t"].shape[0] == 6 and grown["positions"]["h"].shape[0] == 8
    np.testing.assert_array_equal(grown["positions"]["t"][1:], 0.0)
    np.testing.assert_array_equal(grown["positions"]["h"][::2], params["positions"]["h"])
    # An image on the old grid, seen by the grown model at every other spatial position (the
    # stretched table reproduces the old embeddings there) gives the same velocity.
    old_model, new_model = t2i.bind(params), video.bind(jax.tree.map(jnp.asarray, grown))
    coords_old = jnp.stack(jnp.meshgrid(jnp.arange(1), jnp.arange(4), jnp.arange(4), indexing="ij"),
                           -1).reshape(1, -1, 3)
    tokens = jax.random.normal(jax.random.key(2), (1, 16, 4))  # 1x1x1 patches, 4 channels
    shapes = text_shapes(text_config())  # the smoke config's three encoders
    text = {n: jnp.ones((1, 1, length, dim)) for n, (length, dim) in shapes.items()}
    mask = {n: jnp.ones((1, 1, length), bool) for n, (length, _) in shapes.items()}
    seg, t = jnp.zeros((1, 16), jnp.int32), jnp.full((1, 1), 0.3)
    ref = old_model.forward_packed(tokens, coords_old, seg, t, text, mask)
    out = new_model.forward_packed(tokens, coords_old * jnp.array([1, 2, 2]), seg, t, text, mask)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_growth_refuses_other_shape_changes():
    small = _model((1, 4, 4))
    other = build_dit(load_config("experiments/quickstart.py:smoke",
                                  [b if "mlp_dim" not in b else "dit.mlp_dim=48" for b in BASE]
                                  + ["dit.max_positions=(2, 8, 8)", "data.frames=1"]))
    with pytest.raises(ValueError, match=r"\[.ffn.\].*changes shape"):
        grow_positions(small.init(jax.random.key(0)), other.abstract_params())


def test_checkpoint_to_checkpoint_growth(tmp_path):
    from mgen_jax.checkpointing.manager import PhaseCheckpointer
    from mgen_jax.training.train_state import TrainState
    cfg = load_config("experiments/quickstart.py:smoke", BASE)
    t2i, video = _model((1, 4, 4)), _model((6, 12, 12))
    optimizer = make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps)
    params = t2i.init(jax.random.key(0))
    PhaseCheckpointer(str(tmp_path / "t2i")).save(7, TrainState.create(params, optimizer))
    fresh = lambda p: TrainState.create(p, optimizer)  # noqa: E731
    assert grow_dit_checkpoint(str(tmp_path / "t2i"), str(tmp_path / "video"), video, fresh) == 7
    dst = PhaseCheckpointer(str(tmp_path / "video"))
    assert dst.latest_step() == 0 and dst.read_meta(0)["source_step"] == 7
    abstract = jax.eval_shape(lambda p: TrainState.create(p, optimizer), video.abstract_params())
    state, _, _ = dst.restore(0, abstract)
    np.testing.assert_array_equal(state.params["positions"]["w"][::3], params["positions"]["w"])
    np.testing.assert_array_equal(state.params["blocks"]["ffn"]["up"]["kernel"],
                                  params["blocks"]["ffn"]["up"]["kernel"])
    with pytest.raises(FileExistsError):
        grow_dit_checkpoint(str(tmp_path / "t2i"), str(tmp_path / "video"), video, fresh)
