"""`mgen average`'s driver (training/average_runs.py) on small workdirs written directly: the
output workdir's DiT holds the weighted mean of the runs' EMAs as params and EMA, the first run's
optimizer state, frozen encoders, config and TAE; incompatible runs and occupied outputs are
refused, naming what differs. (tests/test_quickstart_end_to_end.py runs it on a trained workdir.)"""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.configs.loading import load_config
from mgen_jax.models.builders import build_dit, build_text_encoders
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.average_runs import average_runs, parse_run, parse_weights
from mgen_jax.training.optimizer import find_states, make_optimizer
from mgen_jax.training.sharded_training import abstract_train_state, train_state_shardings
from mgen_jax.workdir import checkpoint_dir, claim_workdir, load_workdir_config

SMOKE = "experiments/quickstart.py:smoke"
# An EMA kept (the driver must average it, not the raw params), the encoders saved with the
# DiT checkpoint (text.precompute off), so every part of the output is exercised; parameters
# split over 8 devices (fsdp), as the averaged ones must be too.
BASE = ["dit_optimizer.ema_decay=0.9", "text.precompute=False", "dit.width=24", "dit.depth=2",
        "dit.scan_unroll=1", "mesh.data=1", "mesh.fsdp=8"]


def _setup(cfg):
    mesh, rules = build_mesh(cfg.mesh), rules_from_preset(cfg.mesh.rules)
    model = build_dit(cfg)
    optimizer = make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps)
    return mesh, model, optimizer, train_state_shardings(model, optimizer, mesh, rules)


def _random_like(abstract, rng):
    """Random arrays in the abstract tree's shardings, without compiling an init."""
    return jax.tree.map(lambda a: jax.device_put(
        rng.standard_normal(a.shape).astype(a.dtype), a.sharding), abstract)


def _text_abstract(cfg, mesh):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated(mesh)),
                        build_text_encoders(cfg).abstract_params())


def _workdir(path, seed, steps=(3,), latent_shift=0.25):
    """A workdir as a text-to-video run leaves it: config, a TAE checkpoint, DiT checkpoints at
    `steps` (random weights) whose EMA differs from the params. Returns {step: TrainState}."""
    cfg = load_config(SMOKE, BASE)
    claim_workdir(cfg, str(path))
    tae = PhaseCheckpointer(checkpoint_dir(str(path), "tae"))
    tae.save(2, {"tae_marker": jnp.full((5,), float(seed))}, meta={"seed": seed})
    tae.close()
    mesh, model, optimizer, shardings = _setup(cfg)
    abstract = abstract_train_state(model, optimizer, shardings)
    rng = np.random.default_rng(seed)
    text_params = _random_like(_text_abstract(cfg, mesh), rng)
    ckpt, states = PhaseCheckpointer(checkpoint_dir(str(path), "dit")), {}
    for step in steps:
        state = abstract.replace(step=jnp.asarray(step, jnp.int32),
                                 params=_random_like(abstract.params, rng),
                                 opt_state=_random_like(abstract.opt_state, rng))
        ckpt.save(step, state, frozen=text_params,
                  meta={"latent_shift": latent_shift, "latent_scale": 1.5, "params": 7})
        states[step] = state
    ckpt.close()
    return states


def _restored(workdir):
    """(TrainState, frozen, meta) of the workdir's newest DiT checkpoint, as eval restores it."""
    cfg = load_workdir_config(str(workdir))
    mesh, model, optimizer, shardings = _setup(cfg)
    ckpt = PhaseCheckpointer(checkpoint_dir(str(workdir), "dit"))
    return ckpt.restore(ckpt.latest_step(), abstract_train_state(model, optimizer, shardings),
                        abstract_frozen=_text_abstract(cfg, mesh))


def _close(actual, expected):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return (root, _workdir(root / "a", seed=1, steps=(3,)),
            _workdir(root / "b", seed=2, steps=(4, 6)))


@pytest.mark.slow  # with the next one: sharded runs written and averaged (~30 s)
def test_the_average_of_the_emas_becomes_params_and_ema(runs, tmp_path):
    root, a, b = runs
    out = tmp_path / "avg"
    record = average_runs([str(root / "a"), f"{root / 'b'}@4"], str(out), weights=[1, 3])
    expected = jax.tree.map(lambda x, y: 0.25 * x + 0.75 * y, a[3].sampling_params(),
                            b[4].sampling_params())
    state, frozen, meta = _restored(out)
    _close(state.params, expected)
    _close(state.sampling_params(), expected)  # the EMA too: sampling reads the average
    # Otherwise the first run's optimizer state (its Adam moments here).
    _close(find_states(state.opt_state, optax.ScaleByAdamState),
           find_states(a[3].opt_state, optax.ScaleByAdamState))
    assert int(state.step) == 3
    _close(frozen, _restored(root / "a")[1])
    sources = [(s["workdir"], s["step"], s["params"], s["weight"]) for s in record["sources"]]
    assert sources == [(str(root / "a"), 3, "ema", 0.25), (str(root / "b"), 4, "ema", 0.75)]
    assert meta["average"] == {k: v for k, v in record.items() if k != "out"}
    assert meta["latent_shift"] == 0.25 and meta["latent_scale"] == 1.5
    on_disk = json.loads((out / "average.json").read_text())
    assert on_disk["weights"] == [0.25, 0.75] and on_disk["requested_weights"] == [1, 3]
    assert (out / "config.json").read_text() == (root / "a" / "config.json").read_text()
    tae = PhaseCheckpointer(checkpoint_dir(str(out), "tae"))
    assert tae.read_meta(tae.latest_step()) == {"seed": 1}  # the first run's TAE
    assert sorted(os.listdir(tmp_path)) == ["avg"]  # no temporary sibling left behind


@pytest.mark.slow
def test_newest_step_by_default_and_an_existing_output(runs, tmp_path):
    root, a, b = runs
    out = str(tmp_path / "avg")
    first = average_runs([str(root / "b"), str(root / "a")], out)
    assert [(s["step"], s["weight"]) for s in first["sources"]] == [(6, 0.5), (3, 0.5)]
    state, _, _ = _restored(out)
    _close(state.params, jax.tree.map(lambda x, y: (x + y) / 2, b[6].sampling_params(),
                                      a[3].sampling_params()))
    again = average_runs([str(root / "b"), str(root / "a")], out)
    assert again["already"] and again["sources"] == first["sources"]
    with pytest.raises(FileExistsError, match="holds a different average"):
        average_runs([str(root / "b"), str(root / "a")], out, weights=[2, 1])
    with pytest.raises(FileExistsError, match="not an average"):
        average_runs([str(root / "b"), str(root / "a")], str(root))
    with pytest.raises(ValueError, match="is one of the averaged workdirs"):
        average_runs([str(root / "b"), str(root / "a")], str(root / "a"))


def test_incompatible_runs_are_refused_naming_the_key(runs, tmp_path):
    root, _, _ = runs
    shutil.copytree(root / "a", tmp_path / "wider")  # the config alone differs: refused first
    config = json.loads((tmp_path / "wider" / "config.json").read_text())
    config["dit"]["width"] = 40
    (tmp_path / "wider" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config key dit\.width differs \(40 vs 24\)"):
        average_runs([str(root / "a"), str(tmp_path / "wider")], str(tmp_path / "out"))
    _workdir(tmp_path / "shifted", seed=3, latent_shift=0.5)
    with pytest.raises(ValueError, match=r"latent_shift 0\.5 differs from 0\.25"):
        average_runs([str(root / "a"), str(tmp_path / "shifted")], str(tmp_path / "out"))
    with pytest.raises(ValueError, match="no dit checkpoint at step 5 \\(steps: \\[4, 6\\]\\)"):
        average_runs([str(root / "a"), f"{root / 'b'}@5"], str(tmp_path / "out"))
    with pytest.raises(ValueError, match="3 weights given for 2 checkpoints"):
        average_runs([str(root / "a"), str(root / "b")], str(tmp_path / "out"), weights=[1, 2, 3])
    with pytest.raises(ValueError, match="at least two"):
        average_runs([str(root / "a")], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_checkpoint_arguments_and_weights_parse(tmp_path):
    (tmp_path / "run").mkdir()
    assert parse_run(f"{tmp_path}/run@12") == (f"{tmp_path}/run", 12)
    assert parse_run(f"{tmp_path}/run") == (f"{tmp_path}/run", None)
    assert parse_run(f"{tmp_path}/run@best") == (f"{tmp_path}/run@best", None)
    assert parse_weights("0.5,0.3,0.2") == [0.5, 0.3, 0.2]
    with pytest.raises(ValueError, match="comma separated numbers"):
        parse_weights("0.5;0.5")
