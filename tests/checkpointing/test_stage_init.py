"""Stage chaining (`<phase>_train.init_from`): a stage starts from the previous stage's
checkpoint with its position tables extended at the same resolution (a 256 px image keeps its
exact output), stretched when the resolution grows, new latent channels zero, and every other
change refused naming the parameter."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.checkpointing.stage_init import (Growth, dit_growth, find_field, find_source,
                                               flatten, grow_params, position_lengths,
                                               restore_subtrees, state_metadata)
from mgen_jax.configs.loading import load_config
from mgen_jax.configs.text import text_shapes
from mgen_jax.configs.validation import ConfigError
from mgen_jax.models.builders import build_dit, build_tae_trainable
from mgen_jax.parallel.logical_rules import rules_from_preset, unsharded
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.training.init_from import train_state_from
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.sharded_training import train_state_shardings
from mgen_jax.training.train_state import TrainState
from mgen_jax.workdir import checkpoint_dir, claim_workdir
from tests.compile_flags import FAST_COMPILE

# The quickstart's tiny TAE compresses 8x8x8; its 1x1x1 patches make a 32 px frame 4x4 tokens.
BASE = ["dit.width=24", "dit.num_heads=2", "dit.mlp_dim=40", "dit.depth=1", "dit.scan_unroll=1",
        "tae.z_channels=4", "mesh.data=2", "mesh.fsdp=4"]
T2I = ["data.frames=1", "dit.max_positions=(1, 4, 4)"]              # images, 32 px
T2IV = ["data.frames=16", "dit.max_positions=(2, 8, 8)"]            # + video, more ratios
T2IV_X3 = ["data.frames=16", "data.height=96", "data.width=96",     # 3x the resolution
           "dit.max_positions=(2, 24, 24)"]


def _cfg(*overrides):
    return load_config("experiments/quickstart.py:smoke", BASE + [o for g in overrides for o in g])


def _trained_like(model, seed=0):
    """Random parameters, every table and zero-initialised projection non-zero so that each
    parameter shows in the output (numpy: no compile per parameter shape)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        base = 1.0 if jax.tree_util.keystr(path).endswith("['scale']") else 0.0
        return (base + 0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
    return jax.tree_util.tree_map_with_path(draw, model.abstract_params())


def _velocity(model, cfg):
    """params, latents -> the DiT's velocity for one fixed prompt and t (one compile)."""
    text = {n: jnp.linspace(-1, 1, length * dim).reshape(1, length, dim)
            for n, (length, dim) in text_shapes(cfg.text).items()}
    mask = {n: jnp.ones((1, length), bool) for n, (length, _) in text_shapes(cfg.text).items()}

    @jax.jit
    def run(params, latents):
        with unsharded():  # the DiT called directly, without the training mesh
            return model.bind(params)(latents, jnp.full((1,), 0.3), text, mask)
    return lambda params, latents: np.asarray(run(params, latents))


def test_t2i_to_t2iv_at_the_same_resolution_keeps_an_images_output_exactly():
    t2i_cfg, t2iv_cfg = _cfg(T2I), _cfg(T2IV)
    t2i, t2iv = build_dit(t2i_cfg), build_dit(t2iv_cfg)
    params = _trained_like(t2i)
    growth = dit_growth(t2iv_cfg, t2i_cfg, position_lengths(params),
                        position_lengths(t2iv.abstract_params()))
    assert growth.stretch == {"t": 1.0, "h": 1.0, "w": 1.0}  # same 32 px: extend every table
    grown, changes = grow_params(flatten(params), t2iv.abstract_params(), growth)
    assert changes == ["positions.h 4->8 rows extended", "positions.t 1->2 rows extended",
                       "positions.w 4->8 rows extended"]
    for axis in "thw":  # old rows kept, the new ones (the temporal table's too) zero
        old = len(params["positions"][axis])
        np.testing.assert_array_equal(grown["positions"][axis][:old], params["positions"][axis])
        np.testing.assert_array_equal(grown["positions"][axis][old:], 0.0)
    image = jax.random.normal(jax.random.key(3), (1, 1, 4, 4, 4))  # one 32 px frame's latents
    before = _velocity(t2i, t2i_cfg)(params, image)
    t2iv_velocity = _velocity(t2iv, t2iv_cfg)
    after = t2iv_velocity(grown, image)
    assert np.abs(before).mean() > 1e-3
    np.testing.assert_array_equal(after, before)
    # Stretching at the same resolution (what the recipe must not do) changes the image's output.
    stretched, _ = grow_params(flatten(params), t2iv.abstract_params(),
                               Growth(stretch={"t": 1.0, "h": 2.0, "w": 2.0}, patch_volume=1))
    assert np.abs(t2iv_velocity(stretched, image) - before).max() > 1e-3


def test_resolution_x3_stretches_the_spatial_tables_old_rows_at_3x():
    src_cfg, cfg = _cfg(T2IV), _cfg(T2IV_X3)
    params = _trained_like(build_dit(src_cfg))
    target = build_dit(cfg).abstract_params()
    growth = dit_growth(cfg, src_cfg, position_lengths(params), position_lengths(target))
    assert growth.stretch == {"t": 1.0, "h": 3.0, "w": 3.0}  # 4 -> 12 latent patches per side
    grown, changes = grow_params(flatten(params), target, growth)
    assert "positions.h 8->24 rows stretched x3" in changes
    for axis in "hw":
        np.testing.assert_array_equal(grown["positions"][axis][::3], params["positions"][axis])
        np.testing.assert_allclose(grown["positions"][axis][1],
                                   (2 * params["positions"][axis][0]
                                    + params["positions"][axis][1]) / 3, rtol=1e-6)
    np.testing.assert_array_equal(grown["positions"]["t"], params["positions"]["t"])
    np.testing.assert_array_equal(grown["blocks"]["ffn"]["up"]["kernel"],
                                  params["blocks"]["ffn"]["up"]["kernel"])


def test_a_stretch_that_does_not_fit_the_new_table_fails_naming_the_key():
    src_cfg, cfg = _cfg(T2IV), _cfg(T2IV_X3, ["dit.max_positions=(2, 16, 16)"])
    with pytest.raises(ValueError, match=r"init_position_stretch\.h = 0: data\.height 32 -> 96 "
                                         r"px.*needs 24 rows; dit\.max_positions gives 16"):
        dit_growth(cfg, src_cfg, {"t": 2, "h": 8, "w": 8}, {"t": 2, "h": 16, "w": 16})


def test_without_the_source_config_a_growing_table_needs_its_factor():
    cfg = _cfg(T2IV)
    old, new = {"t": 1, "h": 4, "w": 4}, {"t": 2, "h": 8, "w": 8}
    with pytest.raises(ValueError, match=r"dit_train\.init_position_stretch\.h: .*4 -> 8 rows"):
        dit_growth(cfg, None, old, new)
    cfg.dit_train.init_position_stretch.update(h=2, w=1)
    assert dit_growth(cfg, None, old, new).stretch == {"t": 1.0, "h": 2.0, "w": 1.0}


def test_a_changed_parameter_fails_naming_it():
    src = build_dit(_cfg(T2I)).abstract_params()
    growth = dit_growth(_cfg(T2IV), _cfg(T2I), position_lengths(src), {"t": 2, "h": 8, "w": 8})
    wider = build_dit(_cfg(T2IV, ["dit.mlp_dim=48"])).abstract_params()
    with pytest.raises(ValueError, match=r"parameter blocks\.ffn\.down\.kernel has shape "
                                         r"\(1, 40, 24\) in the source checkpoint, \(1, 48, 24\)"):
        grow_params(flatten(src), wider, growth)
    flat = flatten(src)
    with pytest.raises(ValueError, match=r"not in this model: extra\.kernel"):
        grow_params({**flat, ("extra", "kernel"): flat[("patch_embed", "kernel")]}, src)
    del flat[("timestep", "fc1", "bias")]
    with pytest.raises(ValueError, match=r"missing in the source: timestep\.fc1\.bias"):
        grow_params(flat, src)


def test_new_latent_channels_start_at_zero():
    src_cfg, cfg = _cfg(T2I), _cfg(T2I, ["tae.z_channels=6"])
    src, dst = build_dit(src_cfg), build_dit(cfg)
    params = _trained_like(src)
    growth = dit_growth(cfg, src_cfg, position_lengths(params),
                        position_lengths(dst.abstract_params()))
    grown, changes = grow_params(flatten(params), dst.abstract_params(), growth)
    assert "patch_embed.kernel 4->6 latent channels (new zero)" in changes
    latents = jax.random.normal(jax.random.key(4), (1, 1, 4, 4, 6))
    before = _velocity(src, src_cfg)(params, latents[..., :4])
    after = _velocity(dst, cfg)(grown, latents)
    np.testing.assert_allclose(after[..., :4], before, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(after[..., 4:], 0.0)


def test_the_source_is_a_workdir_a_checkpoint_folder_or_one_step(tmp_path):
    params = {"w": np.ones((2,), np.float32)}
    wd = tmp_path / "stage1"
    claim_workdir(_cfg(T2I), str(wd))
    ckpts = PhaseCheckpointer(checkpoint_dir(str(wd), "dit"))
    for step in (2, 4):
        ckpts.save(step, {"params": params})
    ckpts.close()
    for given, step in ((wd, 4), (wd / "checkpoints" / "dit", 4),
                        (wd / "checkpoints" / "dit" / "2", 2)):
        source = find_source(str(given), "dit")
        assert (source.step, source.workdir) == (step, str(wd))
        assert source.checkpoints == str(wd / "checkpoints" / "dit")
    loose = tmp_path / "elsewhere"
    PhaseCheckpointer(str(loose)).save(1, {"params": params})
    assert find_source(str(loose), "dit").workdir is None
    with pytest.raises(FileNotFoundError, match=r"dit_train\.init_from: .*nowhere does not exist"):
        find_source(str(tmp_path / "nowhere"), "dit", key="dit_train.init_from")
    with pytest.raises(FileNotFoundError, match=r"no finished checkpoint in .*checkpoints/tae"):
        find_source(str(wd), "tae")


def _source_workdir(tmp_path, src_cfg, src_model):
    """A stage-1 workdir whose DiT took one optimizer step: parameters, moments and EMA differ."""
    optimizer = make_optimizer(src_cfg.dit_optimizer, src_cfg.dit_train.steps)

    @jax.jit
    def one_step(params):
        state = TrainState.create(params, optimizer)
        grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
        state = state.apply_gradients(grads, optimizer)  # the moments move (the lr is still 0)
        return state.replace(params=jax.tree.map(lambda p: p + 1.0, state.params))  # not the EMA
    state = one_step(_trained_like(src_model))
    wd = str(tmp_path / "stage1")
    claim_workdir(src_cfg, wd)
    ckpts = PhaseCheckpointer(checkpoint_dir(wd, "dit"))
    ckpts.save(5, state)
    ckpts.close()
    return wd, jax.device_get(state)


def _init_from(cfg, model):
    mesh = build_mesh(cfg.mesh, devices=jax.devices()[:8])
    optimizer = make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps)
    shardings = train_state_shardings(model, optimizer, mesh, rules_from_preset(cfg.mesh.rules))
    state, line = train_state_from(cfg, "dit", model, optimizer, shardings, mesh)
    for leaf, sharding in zip(jax.tree.leaves(state), jax.tree.leaves(shardings)):
        assert leaf.sharding == sharding  # placed as training places it
    return jax.device_get(state), line


def _mu(state):
    return state.opt_state.inner_state[1][0].mu  # clip, then adamw's scale_by_adam


def test_init_from_takes_the_ema_and_a_fresh_optimizer(tmp_path):
    ema = ["dit_optimizer.ema_decay=0.5"]
    src_cfg = _cfg(T2I, ema)
    wd, source = _source_workdir(tmp_path, src_cfg, build_dit(src_cfg))
    cfg = _cfg(T2IV, ema, [f"dit_train.init_from={wd}"])
    state, line = _init_from(cfg, build_dit(cfg))
    assert line.startswith(f"initialised from {wd}/checkpoints/dit step 5 (EMA parameters, "
                           "fresh optimizer state); positions.h 4->8 rows extended")
    assert int(state.step) == 0
    kernel = ("blocks", "ffn", "up", "kernel")
    source_ema = flatten(source.ema_params)
    assert not np.array_equal(source_ema[kernel], flatten(source.params)[kernel])
    np.testing.assert_array_equal(flatten(state.params)[kernel], source_ema[kernel])
    np.testing.assert_array_equal(state.params["positions"]["h"][:4],
                                  source.ema_params["positions"]["h"])
    np.testing.assert_array_equal(flatten(state.ema_params)[kernel], source_ema[kernel])
    assert all(not np.any(m) for m in jax.tree.leaves(_mu(state)))


def test_init_optimizer_state_carries_the_moments_grown(tmp_path):
    ema = ["dit_optimizer.ema_decay=0.5"]
    src_cfg = _cfg(T2I, ema)
    wd, source = _source_workdir(tmp_path, src_cfg, build_dit(src_cfg))
    cfg = _cfg(T2IV, ema, [f"dit_train.init_from={wd}/checkpoints/dit/5",
                           "dit_train.init_optimizer_state=True"])
    state, line = _init_from(cfg, build_dit(cfg))
    assert "(parameters, optimizer state carried over)" in line
    np.testing.assert_array_equal(state.params["blocks"]["ffn"]["up"]["kernel"],
                                  source.params["blocks"]["ffn"]["up"]["kernel"])
    np.testing.assert_array_equal(_mu(state)["timestep"]["fc1"]["kernel"],
                                  _mu(source)["timestep"]["fc1"]["kernel"])
    np.testing.assert_array_equal(_mu(state)["positions"]["w"][:4], _mu(source)["positions"]["w"])
    np.testing.assert_array_equal(_mu(state)["positions"]["w"][4:], 0.0)
    np.testing.assert_array_equal(state.ema_params["positions"]["t"][:1],
                                  source.ema_params["positions"]["t"])
    assert int(state.opt_state.inner_state[1][0].count) == 0  # the schedule starts over
    # An optimizer that keeps other states (no EMA here) cannot take the source's.
    other = _cfg(T2IV, [f"dit_train.init_from={wd}", "dit_train.init_optimizer_state=True",
                        "dit_optimizer.max_consecutive_skips=0"])
    with pytest.raises(ValueError, match="init_optimizer_state: the source's optimizer state "
                                         "has no"):
        _init_from(other, build_dit(other))


@pytest.mark.parametrize("override, message", [
    ("tae_train.init_position_stretch.h=3", r"tae_train\.init_position_stretch\.h: .*the TAE"),
    ("dit_train.init_position_stretch.w=-1", r"dit_train\.init_position_stretch\.w: -1"),
    ("dit_train.init_optimizer_state=True", r"dit_train\.init_optimizer_state: needs"),
])
def test_config_validation_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        _cfg([override])


def test_tae_init_from_carries_every_parameter(tmp_path):
    cfg = _cfg(T2I)
    tae = build_tae_trainable(cfg)
    params = _trained_like(tae)
    optimizer = make_optimizer(cfg.tae_optimizer, cfg.tae_train.steps)
    ckpts = PhaseCheckpointer(str(tmp_path / "tae"))
    ckpts.save(3, jax.jit(lambda p: TrainState.create(p, optimizer))(params))
    ckpts.close()
    cfg = _cfg(T2I, [f"tae_train.init_from={tmp_path / 'tae'}"])
    mesh = build_mesh(cfg.mesh, devices=jax.devices()[:8])
    shardings = train_state_shardings(tae, optimizer, mesh, rules_from_preset(cfg.mesh.rules))
    state, line = train_state_from(cfg, "tae", tae, optimizer, shardings, mesh)
    assert line == (f"initialised from {tmp_path / 'tae'} step 3 (parameters, fresh optimizer "
                    "state); every parameter unchanged")
    want = flatten(params)
    for names, got in flatten(jax.device_get(state.params)).items():
        np.testing.assert_array_equal(got, want[names], err_msg=str(names))


# The second job of the end-to-end test: `mgen train` with the DiT's first TrainState (the one
# init_from built, before any step) written to an npz.
SECOND_JOB = """
import sys
import jax
import numpy as np
from mgen_jax import cli
from mgen_jax.training import phase_runner

out, argv = sys.argv[1], sys.argv[2:]
built = phase_runner.initial_train_state

def keep_initial(ctx, phase, *args):
    state = built(ctx, phase, *args)
    if phase == "dit":
        flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
        np.savez(out, **{jax.tree_util.keystr(k): v for k, v in flat})
    return state

phase_runner.initial_train_state = keep_initial
cli.main(argv)
"""


@pytest.mark.slow  # two `mgen train` jobs (TAE untrained, 2 + 0 DiT steps): minutes on 2 cores
def test_a_second_job_starts_from_the_first_jobs_dit(tmp_path):
    # One device, as a laptop run, compiling fast (tests/compile_flags.py).
    env = dict(os.environ, XLA_FLAGS=FAST_COMPILE, JAX_PLATFORMS="cpu")
    smoke = ["--config=experiments/quickstart.py:smoke", "--no-progress", "--skip-eval",
             "--config.data.num_clips=16", "--config.tae_train.steps=0"]
    first, second = tmp_path / "stage1", tmp_path / "stage2"
    proc = subprocess.run([sys.executable, "-m", "mgen_jax.cli", "train", *smoke,
                           f"--workdir={first}", "--config.dit_train.steps=2",
                           "--config.dit_optimizer.ema_decay=0.5"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-c", SECOND_JOB, str(tmp_path / "initial.npz"),
                           "train", *smoke, f"--workdir={second}", "--config.dit_train.steps=0",
                           f"--config.dit_train.init_from={first}"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (f"[dit] initialised from {first}/checkpoints/dit step 2 (EMA parameters, fresh "
            "optimizer state); every parameter unchanged") in proc.stdout
    source = find_source(str(first), "dit")
    metadata = state_metadata(source)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    ema, trained = restore_subtrees(
        source, metadata, [find_field(metadata["opt_state"], "ema_params", ("opt_state",)),
                           ("params",)], lambda *_: device)
    initial = np.load(tmp_path / "initial.npz")
    assert sorted(initial.files) == sorted("".join(f"['{n}']" for n in k) for k in ema)
    # The EMA, not the last step's parameters (the zero-initialised output projection moved).
    assert not np.array_equal(ema[("final_proj", "kernel")], trained[("final_proj", "kernel")])
    for names, value in ema.items():
        np.testing.assert_array_equal(initial["".join(f"['{n}']" for n in names)], value)
    # Nothing to train (steps=0): the initialised model is saved as the stage's step 0, so the
    # workdir is whole for the next stage, `mgen sample` and `mgen eval`.
    assert [n for n in os.listdir(second / "checkpoints" / "dit") if n.isdigit()] == ["0"]
