"""Movie Gen Audio's DiT: the "dit" block against PyTorch's own layers, what each condition does
(and what the model must ignore), visual-feature resampling, the shared scanned stack, sharded
== unsharded, the 13b preset's size and the analytic FLOPs against XLA's count."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from mgen_jax.configs.audio_dit import audio_dit_config
from mgen_jax.configs.mesh import mesh_config
from mgen_jax.models.audio.audio_dit import AudioDiffusionTransformer, resample_frames
from mgen_jax.models.audio.audio_dit_flops import audio_dit_train_flops
from mgen_jax.models.dit.block import TransformerBlock, block_style
from mgen_jax.models.pure_model import PureModel
from mgen_jax.parallel.logical_rules import DEFAULT_RULES, activation_sharding, unsharded
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.parallel.sharding import logical_axes
from mgen_jax.planning import hlo

C, DV, DT = 5, 7, 9  # latent channels, visual feature dim, text dim: odd on purpose


def tiny_cfg(**kw):
    cfg = audio_dit_config("tiny")
    cfg.update(width=30, depth=2, num_heads=3, mlp_dim=46, max_frames=16, **kw)
    return cfg


def constructor(cfg):
    return lambda rngs: AudioDiffusionTransformer(cfg, latent_channels=C, video_dim=DV,
                                                  text_dims=(("t5", DT),), rngs=rngs)


def random_params(pure: PureModel, seed: int = 0) -> dict:
    """Random weights from NumPy (fresh init is zero-gated, and initialising through JAX compiles
    one random kernel per shape): kernels ~ N(0, 1/fan_in), norm scales 1 + N(0, 0.1^2), every
    other parameter N(0, 0.1^2)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        x = rng.normal(size=leaf.shape)
        if name == "kernel":
            x = x / np.sqrt(leaf.shape[-2])
        else:
            x = (1.0 if name == "scale" else 0.0) + 0.1 * x
        return jnp.asarray(x, jnp.float32)
    return jax.tree_util.tree_map_with_path(draw, pure.abstract_params())


def tiny_model(seed: int = 0, **kw):
    """(the bound model, its PureModel, params) of the tiny config with random weights."""
    pure = PureModel.create(constructor(tiny_cfg(**kw)))
    params = random_params(pure, seed)
    return pure.bind(params), pure, params


def inputs(b=2, frames=13, video_frames=9, text_len=6, seed=1):
    ks = jax.random.split(jax.random.key(seed), 5)
    x_t = jax.random.normal(ks[0], (b, frames, C))
    video = jax.random.normal(ks[1], (b, video_frames, DV))
    context = jax.random.normal(ks[2], (b, frames, C))
    known = jnp.array([4, 0])[:b, None, None]  # example 0 knows its first 4 frames, 1 none
    mask = (jnp.arange(frames)[None, :, None] < known).astype(jnp.float32)
    text = jax.random.normal(ks[3], (b, text_len, DT))
    text_mask = jnp.arange(text_len)[None, :] < jnp.array([[text_len], [3]])[:b]
    return dict(x_t=x_t, t=jax.random.uniform(ks[4], (b,)), text={"t5": text},
                text_mask={"t5": text_mask}, video=video, context=context, context_mask=mask)


def call(model, a):
    return model(a["x_t"], a["t"], a["text"], a["text_mask"], video=a["video"],
                 context=a["context"], context_mask=a["context_mask"])


@pytest.fixture(autouse=True)
def _unsharded():
    """The model is called directly here, deliberately without sharding constraints (the
    sharded test declares its own)."""
    with unsharded():
        yield


def test_fresh_model_predicts_zero_with_dit_blocks_and_named_axes():
    model = constructor(tiny_cfg())(nnx.Rngs(0))
    out = nnx.jit(call)(model, inputs())  # one compile, not one per op
    assert out.shape == (2, 13, C) and out.dtype == jnp.float32
    np.testing.assert_array_equal(out, 0.0)  # adaLN-zero + zero output projection
    axes = logical_axes(nnx.state(model))
    assert all(isinstance(a, tuple) and all(isinstance(n, str) for n in a)
               for a in jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, tuple)))
    blocks = axes["blocks"]  # the dit style: LayerNorm, GELU MLP with biases, biased attention
    assert set(blocks["ffn"]) == {"up", "down"}
    assert blocks["ffn"]["up"]["bias"] == ("layers", "mlp")
    assert blocks["self_attn"]["q"]["bias"] == ("layers", "heads")
    assert set(blocks["cross_norm"]) == {"scale", "bias"} and "attn_norm" not in blocks
    assert axes["positions"]["table"] == ("table", "embed")


def test_block_style_defaults_to_llama_and_rejects_unknown_styles():
    cfg = tiny_cfg()
    del cfg["block_style"]
    assert block_style(cfg) == "llama"
    cfg.block_style = "gpt"
    with pytest.raises(ValueError, match="llama, dit"):
        block_style(cfg)


def _torch_dit_block(block, w, heads, eps):
    """The same block from torch.nn layers, weights copied from the NNX block."""
    t = lambda a: torch.tensor(np.asarray(a))
    mods = {}
    for name in ("self_attn", "cross_attn"):
        a = getattr(block, name)
        mha = torch.nn.MultiheadAttention(w, heads, bias=True, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([t(getattr(a, p).kernel[...]).T for p in "qkv"]))
            mha.in_proj_bias.copy_(torch.cat([t(getattr(a, p).bias[...]) for p in "qkv"]))
            mha.out_proj.weight.copy_(t(a.o.kernel[...]).T)
            mha.out_proj.bias.copy_(t(a.o.bias[...]))
        mods[name] = mha
    up, down = torch.nn.Linear(w, block.ffn.up.kernel.shape[1]), torch.nn.Linear(
        block.ffn.up.kernel.shape[1], w)
    cross_norm = torch.nn.LayerNorm(w, eps=eps)
    with torch.no_grad():
        for lin, dense in ((up, block.ffn.up), (down, block.ffn.down)):
            lin.weight.copy_(t(dense.kernel[...]).T)
            lin.bias.copy_(t(dense.bias[...]))
        cross_norm.weight.copy_(t(block.cross_norm.scale[...]))
        cross_norm.bias.copy_(t(block.cross_norm.bias[...]))
    mlp = torch.nn.Sequential(up, torch.nn.GELU(approximate="tanh"), down)
    norm = torch.nn.LayerNorm(w, eps=eps, elementwise_affine=False)
    return mods, mlp, norm, cross_norm


def test_dit_block_matches_torch_layers():
    cfg = tiny_cfg()
    pure = PureModel.create(lambda rngs: TransformerBlock(cfg, rngs=rngs))
    block = pure.bind(random_params(pure, seed=3))
    w, b, n, length = cfg.width, 2, 11, 6
    rng = np.random.default_rng(4)
    x, pos = rng.normal(size=(b, n, w)), rng.normal(size=(1, n, w))
    modulation, text = 0.3 * rng.normal(size=(b, 1, 6, w)), rng.normal(size=(b, length, w))
    text_mask = np.arange(length)[None] < np.array([[length], [2]])
    out = block(*(jnp.asarray(a, jnp.float32) for a in (x, pos, modulation, text)),
                jnp.asarray(text_mask))

    mods, mlp, norm, cross_norm = _torch_dit_block(block, w, cfg.num_heads, cfg.norm_eps)
    T = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)
    m = T(modulation) + T(block.modulation_table[...])[None, None]
    shift1, scale1, gate1, shift2, scale2, gate2 = (m[:, :, i] for i in range(6))
    with torch.no_grad():
        h = T(x) + T(pos)
        a = norm(h) * (1 + scale1) + shift1
        h = h + gate1 * mods["self_attn"](a, a, a, need_weights=False)[0]
        c = cross_norm(h)
        h = h + mods["cross_attn"](c, T(text), T(text), key_padding_mask=~torch.tensor(text_mask),
                                   need_weights=False)[0]
        h = h + gate2 * mlp(norm(h) * (1 + scale2) + shift2)
    np.testing.assert_allclose(out, h.numpy(), rtol=2e-5, atol=2e-5)


def test_resample_frames_interpolates_linearly_or_takes_the_nearest_frame():
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(2, 7, 3)).astype(np.float32)
    for frames in (7, 11, 25, 4):
        centre = (np.arange(frames) + 0.5) * 7 / frames  # in source-frame units
        source = np.clip(centre - 0.5, 0, 6)
        lin = np.stack([np.stack([np.interp(source, np.arange(7), feats[i, :, d])
                                  for d in range(3)], -1) for i in range(2)])
        np.testing.assert_allclose(resample_frames(jnp.asarray(feats), frames, "linear"), lin,
                                   rtol=1e-5, atol=1e-6)
        nearest = feats[:, np.minimum(np.floor(centre).astype(int), 6)]
        np.testing.assert_array_equal(resample_frames(jnp.asarray(feats), frames, "nearest"),
                                      nearest)
    np.testing.assert_array_equal(resample_frames(jnp.asarray(feats), 7), feats)
    with pytest.raises(ValueError, match="linear, nearest"):
        resample_frames(jnp.asarray(feats), 5, "cubic")


def test_every_condition_matters_and_what_must_be_ignored_is():
    model, pure, params = tiny_model()
    forward = jax.jit(lambda a: call(pure.bind(params), a))  # one compile for every variation
    a = inputs()
    base = forward(a)
    changed = lambda **kw: float(jnp.max(jnp.abs(forward({**a, **kw}) - base)))
    assert changed(video=a["video"] + 1.0) > 1e-3
    assert changed(text={"t5": a["text"]["t5"] + 1.0}) > 1e-3
    assert changed(t=a["t"] * 0.5) > 1e-3
    assert changed(context=a["context"].at[0, :4].add(1.0)) > 1e-3  # example 0 knows 4 frames
    # Ignored: context latents of frames not known (example 1 knows none, example 0 frames >= 4),
    # text tokens past the mask (example 1 reads 3), and video already at the audio rate is
    # the same as video resampled inside the model.
    np.testing.assert_allclose(forward({**a, "context": a["context"].at[1].add(5.0)
                                        .at[0, 4:].add(5.0)}), base, rtol=1e-5, atol=1e-6)
    out = forward({**a, "text": {"t5": a["text"]["t5"].at[1, 3:].set(50.0)}})
    np.testing.assert_allclose(out[1], base[1], rtol=1e-5, atol=1e-6)
    resampled = resample_frames(a["video"], 13, model.cfg.video_resample)
    np.testing.assert_allclose(forward({**a, "video": resampled}), base, rtol=1e-5, atol=1e-6)
    # Without video or context the model still runs (text-to-audio generation).
    out = jax.jit(lambda a: pure.bind(params)(a["x_t"], a["t"], a["text"], a["text_mask"]))(a)
    assert out.shape == base.shape and bool(jnp.all(jnp.isfinite(out)))
    assert float(jnp.max(jnp.abs(out - base))) > 1e-3
    with pytest.raises(ValueError, match="max_frames"):  # raised while tracing
        jax.eval_shape(lambda: model(jnp.zeros((2, 17, C)), a["t"], a["text"], a["text_mask"]))


@pytest.mark.slow  # compile-heavy: CI runs it with the slow tests
def test_full_remat_and_unroll_agree_with_the_plain_scan():
    """The stack is the video DiT's (models/dit/stack.py, its loop and every policy tested in
    test_dit.py): here one policy and an unroll through the audio model."""
    a = inputs()
    results = []
    for kw in ({}, dict(remat="full", scan_unroll=2)):
        model, pure, params = tiny_model(**kw)
        loss = lambda p: jnp.sum(jnp.square(call(pure.bind(p), a)))
        results.append(jax.jit(jax.value_and_grad(loss))(params))
    for value, grads in results[1:]:
        np.testing.assert_allclose(value, results[0][0], rtol=1e-5)
        for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(results[0][1])):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # compile-heavy: CI runs it with the slow tests
def test_sharded_on_eight_devices_equals_unsharded():
    _, pure, params = tiny_model()
    a = inputs(frames=16)
    reference = jax.jit(lambda p, a: call(pure.bind(p), a))(params, a)
    mesh = build_mesh(mesh_config(data=1, fsdp=2, context=2, tensor=2))
    shardings = pure.shardings(mesh, DEFAULT_RULES)
    sharded = jax.device_put(params, shardings)
    assert tuple(sharded["blocks"]["ffn"]["up"]["kernel"].sharding.spec) == (None, "fsdp", "tensor")

    @jax.jit
    def forward(p, a):
        with activation_sharding(mesh, DEFAULT_RULES):
            return call(pure.bind(p), a)
    np.testing.assert_allclose(forward(sharded, a), reference, rtol=1e-5, atol=1e-5)


def test_13b_preset_builds_abstractly_at_the_papers_size():
    cfg = audio_dit_config("13b")
    pure = PureModel.create(lambda rngs: AudioDiffusionTransformer(
        cfg, latent_channels=128, video_dim=1024, text_dims=(("t5", 768),), rngs=rngs))
    w, f, depth = cfg.width, cfg.mlp_dim, cfg.depth
    assert (w, depth, f, w // cfg.num_heads) == (4608, 36, 18432, 128)
    # Per layer: biased self- and cross-attention, biased GELU MLP, the (6, W) modulation table,
    # the cross-attention LayerNorm; outside: the input, video, text projections, positions,
    # timestep MLP, shared modulation and the final layer.
    layer = 2 * 4 * (w * w + w) + (2 * w * f + f + w) + 6 * w + 2 * w
    outside = ((2 * 128 + 1) * w + w + cfg.max_frames * w + (1024 * w + w) + (768 * w + 3 * w)
               + (256 * w + w + w * w + w) + (w * 6 * w + 6 * w) + (w * 2 * w + 2 * w)
               + (w * 128 + 128))
    assert pure.num_params() == depth * layer + outside
    assert 12e9 <= pure.num_params() <= 14e9  # "13B" excluding MetaCLIP, T5 and the DAC-VAE


@pytest.mark.slow  # compile-heavy: CI runs it with the slow tests
def test_analytic_flops_match_the_compiled_matmuls_of_a_train_step():
    """Every dot of the compiled gradient program, loop trip counts included (planning/hlo.py,
    as `mgen plan` counts them), against the analytic count (equal when measured)."""
    _, pure, params = tiny_model()
    cfg = pure.bind(params).cfg
    a = inputs(frames=16, video_frames=16)
    floats = {"x_t": a["x_t"], "t": a["t"], "video": a["video"], "context": a["context"],
              "text": a["text"]}
    loss = lambda p, f: jnp.sum(jnp.square(call(pure.bind(p), {**a, **f})))
    # Gradients for the weights and every input: each matmul runs forward and twice backward.
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, floats).compile()
    counted = hlo.matmul_flops(hlo.analyze(compiled.as_text()))
    analytic = audio_dit_train_flops(cfg, frames=16, text_tokens=6, text_dim=DT, video_dim=DV,
                                     latent_channels=C, batch_size=2)
    assert analytic["per_frame"] == pytest.approx(analytic["total"] / 32)
    assert counted == pytest.approx(analytic["total"], rel=1e-3), (counted, analytic["parts"])
