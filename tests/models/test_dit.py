"""The Movie Gen transformer: shapes on odd grids, scan == loop == remat, conditioning matters."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgen_jax.configs.dit import dit_config
from mgen_jax.models.dit.embeddings import patchify, unpatchify
from mgen_jax.models.dit.transformer import DiffusionTransformer
from mgen_jax.parallel.logical_rules import unsharded
from mgen_jax.parallel.sharding import logical_axes


@pytest.fixture(autouse=True)
def _unsharded():
    """These tests call the DiT directly, deliberately without sharding constraints."""
    with unsharded():
        yield


def _cfg(**kw):
    cfg = dit_config("tiny")
    cfg.update(width=36, depth=3, num_heads=3, mlp_dim=52, max_positions=(5, 7, 9), **kw)
    return cfg


def _randomize(model, seed=0):
    """Zero-initialised gates make a fresh DiT output zeros; perturb every parameter (drawn in
    NumPy: a jax draw compiles one random kernel per parameter shape)."""
    state = nnx.state(model)
    leaves, treedef = jax.tree.flatten(state)
    rng = np.random.default_rng(seed)
    leaves = [x + 0.05 * rng.standard_normal(x.shape, np.float32) for x in leaves]
    nnx.update(model, jax.tree.unflatten(treedef, leaves))
    return model


# Jitted entry points: op-by-op execution compiles every op of the DiT on its own.
forward = nnx.jit(lambda model, *args: model(*args))


@nnx.jit
def _loss_and_grads(model, inputs):
    return nnx.value_and_grad(lambda m: jnp.sum(jnp.square(m(*inputs))))(model)


TEXT_DIMS = (("ul2", 11),)  # one encoder; the three-encoder conditioner is tested below


def _inputs(b=2, grid=(3, 6, 10), c=5, text_len=7):
    ks = jax.random.split(jax.random.key(1), 3)
    latents = jax.random.normal(ks[0], (b, *grid, c))
    text = jax.random.normal(ks[1], (b, text_len, 11))
    mask = jnp.arange(text_len)[None, :] < jnp.array([[text_len], [4]])[:b]
    return latents, jax.random.uniform(ks[2], (b,)), {"ul2": text}, {"ul2": mask}


def test_patchify_round_trip_odd_grid():
    x = jax.random.normal(jax.random.key(0), (2, 3, 6, 10, 5))
    tokens = patchify(x, (1, 2, 2))
    assert tokens.shape == (2, 3 * 3 * 5, 20)
    np.testing.assert_array_equal(unpatchify(tokens, (3, 3, 5), (1, 2, 2), 5), x)


def test_fresh_model_predicts_zero_and_every_param_has_logical_axes():
    model = DiffusionTransformer(_cfg(), latent_channels=5, text_dims=TEXT_DIMS, rngs=nnx.Rngs(0))
    out = forward(model, *_inputs())
    assert out.shape == (2, 3, 6, 10, 5)
    np.testing.assert_array_equal(out, 0.0)  # adaLN-zero + zero output projection
    axes = jax.tree.leaves(logical_axes(nnx.state(model)), is_leaf=lambda x: isinstance(x, tuple))
    assert axes and all(isinstance(a, tuple) for a in axes)
    assert logical_axes(nnx.state(model))["blocks"]["ffn"]["gate"]["kernel"] == ("layers", "embed", "mlp")


@pytest.mark.parametrize("variant", [
    pytest.param(dict(scan_layers=False), marks=pytest.mark.slow),  # 4 layers unrolled: slow compile
    # full remat runs by default with scan_unroll=3 in the test below
    pytest.param(dict(remat="full"), marks=pytest.mark.slow)])
def test_scan_loop_and_remat_agree(variant):
    ref = _randomize(DiffusionTransformer(_cfg(), latent_channels=5, text_dims=TEXT_DIMS, rngs=nnx.Rngs(0)))
    other = _randomize(DiffusionTransformer(_cfg(**variant), latent_channels=5, text_dims=TEXT_DIMS,
                                            rngs=nnx.Rngs(0)))
    inputs = _inputs()
    np.testing.assert_allclose(forward(ref, *inputs), forward(other, *inputs), rtol=1e-5,
                               atol=1e-5)
    (_, g_ref), (_, g_other) = _loss_and_grads(ref, inputs), _loss_and_grads(other, inputs)
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_other)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_output_depends_on_text_time_and_ignores_masked_text():
    model = _randomize(DiffusionTransformer(_cfg(), latent_channels=5, text_dims=TEXT_DIMS, rngs=nnx.Rngs(0)))
    latents, t, text, mask = _inputs()
    base = forward(model, latents, t, text, mask)
    changed = lambda *args: float(jnp.max(jnp.abs(forward(model, *args) - base)))  # noqa: E731
    assert changed(latents, t, {"ul2": text["ul2"] * 2.0}, mask) > 1e-3
    assert changed(latents, t * 0.5, text, mask) > 1e-3
    # Example 1 attends only to its first 4 text tokens: changing the rest changes nothing.
    text2 = {"ul2": text["ul2"].at[1, 4:].set(100.0)}
    np.testing.assert_allclose(forward(model, latents, t, text2, mask)[1], base[1], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("variant", [pytest.param(dict(remat="save_dots"), marks=pytest.mark.slow),
                                     dict(remat="save_attention_out"),
                                     pytest.param(dict(remat="offload"), marks=pytest.mark.slow),
                                     dict(scan_unroll=3), dict(remat="full", scan_unroll=3)])
def test_remat_policies_and_unroll_agree_with_plain_scan(variant):
    ref = _randomize(DiffusionTransformer(_cfg(), latent_channels=5, text_dims=TEXT_DIMS, rngs=nnx.Rngs(0)))
    other = _randomize(DiffusionTransformer(_cfg(**variant), latent_channels=5, text_dims=TEXT_DIMS,
                                            rngs=nnx.Rngs(0)))
    inputs = _inputs()
    (l_ref, g_ref), (l_other, g_other) = (_loss_and_grads(ref, inputs),
                                          _loss_and_grads(other, inputs))
    np.testing.assert_allclose(l_ref, l_other, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_other)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # compiles several remat variants
def test_remat_policies_change_what_is_saved():
    """The policies are not all the same program: fewer saved residuals -> less temp memory."""
    def temp_bytes(remat):
        cfg = _cfg(remat=remat)
        cfg.update(width=96, num_heads=3, mlp_dim=256)
        model = DiffusionTransformer(cfg, latent_channels=5, text_dims=TEXT_DIMS, rngs=nnx.Rngs(0))
        graphdef, state = nnx.split(model)
        loss = lambda s, *a: jnp.sum(jnp.square(nnx.merge(graphdef, s)(*a)))
        inputs = _inputs(grid=(3, 10, 10))
        return jax.jit(jax.grad(loss)).lower(state, *inputs).compile().memory_analysis().temp_size_in_bytes
    none, dots, full = temp_bytes("none"), temp_bytes("save_dots"), temp_bytes("full")
    assert full < dots < none, (full, dots, none)


@pytest.mark.slow  # ~15 s: a bf16 and an fp32 compile
def test_bf16_compute_keeps_fp32_master_weights_and_tracks_fp32():
    f32 = _randomize(DiffusionTransformer(_cfg(), latent_channels=5, text_dims=TEXT_DIMS, rngs=nnx.Rngs(0)))
    bf16 = _randomize(DiffusionTransformer(_cfg(), latent_channels=5, text_dims=TEXT_DIMS,
                                           dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
    inputs = _inputs()
    _, grads = _loss_and_grads(bf16, inputs)
    assert {x.dtype for x in jax.tree.leaves(nnx.state(bf16))} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    out, ref = forward(bf16, *inputs), forward(f32, *inputs)
    assert out.dtype == jnp.float32
    rel = float(jnp.linalg.norm(out - ref) / jnp.linalg.norm(ref))
    assert 1e-5 < rel < 5e-2, rel  # bf16 rounding is visible but small


THREE = (("byt5", 7), ("metaclip", 13), ("ul2", 11))


def _three_encoder_text(b=2, seed=3):
    ks = jax.random.split(jax.random.key(seed), 3)
    lengths = {"byt5": 3, "metaclip": 6, "ul2": 5}
    text = {n: jax.random.normal(k, (b, lengths[n], d)) for k, (n, d) in zip(ks, THREE)}
    mask = {n: jnp.arange(lengths[n])[None, :] < jnp.array([[lengths[n]], [2]])[:b] for n, _ in THREE}
    return text, mask


def test_conditioner_projects_each_encoder_and_concatenates_in_order():
    model = _randomize(DiffusionTransformer(_cfg(), latent_channels=5, text_dims=THREE,
                                            rngs=nnx.Rngs(0)))
    text, mask = _three_encoder_text()
    context, joint = model.conditioner(text, mask)
    assert context.shape == (2, 3 + 6 + 5, 36) and joint.shape == (2, 14)
    start = 0
    for name, _ in THREE:  # each block is that encoder's own Linear + LayerNorm
        n = text[name].shape[1]
        proj = model.conditioner.projections[name]
        np.testing.assert_allclose(context[:, start:start + n], proj(text[name]), rtol=1e-6)
        np.testing.assert_array_equal(joint[:, start:start + n], mask[name])
        start += n


def test_three_encoder_dit_uses_every_encoder_and_ignores_their_padding():
    model = _randomize(DiffusionTransformer(_cfg(), latent_channels=5, text_dims=THREE,
                                            rngs=nnx.Rngs(0)))
    latents, t, _, _ = _inputs()
    text, mask = _three_encoder_text()
    base = forward(model, latents, t, text, mask)
    for name, _ in THREE:
        changed = dict(text, **{name: text[name] + 1.0})
        assert float(jnp.max(jnp.abs(forward(model, latents, t, changed, mask) - base))) > 1e-4, \
            name
        padded = dict(text, **{name: text[name].at[1, 2:].set(50.0)})  # example 1 sees 2 tokens
        np.testing.assert_allclose(forward(model, latents, t, padded, mask)[1], base[1],
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="metaclip"):
        forward(model, latents, t, {k: v for k, v in text.items() if k != "metaclip"}, mask)


def test_dit_block_style_is_the_papers_dit_arm_and_its_flops_count_two_ffn_matrices():
    """block_style="dit" (Table 9's DiT arm, Movie Gen Audio's block): LayerNorm, a 2-matrix GELU
    MLP and biases, same width; the analytic FFN FLOPs follow the matrices it has."""
    from mgen_jax.configs.loading import load_config
    from mgen_jax.models.builders import build_dit
    from mgen_jax.models.dit.flops import dit_train_flops

    llama = load_config("experiments/quickstart.py:smoke")
    dit = load_config("experiments/quickstart.py:smoke", ["dit.block_style=dit"])
    w, f, depth = llama.dit.width, llama.dit.mlp_dim, llama.dit.depth

    def ffn_size(cfg):
        flat, _ = jax.tree_util.tree_flatten_with_path(build_dit(cfg).abstract_params())
        return sum(int(np.prod(v.shape)) for path, v in flat if "ffn" in jax.tree_util.keystr(path))

    size = {"llama": ffn_size(llama), "dit": ffn_size(dit)}
    assert size["llama"] == depth * 3 * w * f
    assert size["dit"] == depth * (2 * w * f + f + w)  # up, down and their biases
    parts = {s: dit_train_flops(c, batch_size=1)["parts"]["ffn"] for s, c in (("llama", llama),
                                                                           ("dit", dit))}
    assert parts["dit"] * 3 == parts["llama"] * 2
    with pytest.raises(Exception, match="block_style"):
        load_config("experiments/quickstart.py:smoke", ["dit.block_style=gpt"])
