"""Sweep files: their validation errors, the runs they expand to, and the runs' stable names."""
import textwrap
from pathlib import Path

import pytest

from mgen_jax.sweeps.runs import check_run_configs, expand_runs, run_name
from mgen_jax.sweeps.spec import SweepError, load_sweep, split_sweep_flags

REPO = Path(__file__).resolve().parents[2]
SMOKE = f"{REPO}/experiments/quickstart.py:smoke"


def write_sweep(tmp_path, body: str, name="sweep.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def sweep_file(tmp_path, **keys) -> str:
    given = dict(base=SMOKE, axes=dict(dit=dict(width=(64, 128))), metrics=("eval/accuracy.all",))
    given.update(keys)
    return write_sweep(tmp_path, f"def get_sweep():\n    return {given!r}\n")


@pytest.mark.parametrize("keys, message", [
    (dict(mode="grid"), "sweep.mode: 'grid' unknown; choose one of train, sample"),
    (dict(combine="cartesian"), "sweep.combine: 'cartesian' unknown; choose one of product, zip"),
    (dict(axes={}), "sweep.axes: no axis to sweep"),
    (dict(axes=dict(dit=dict(width=64))), "sweep.axes.dit.width: 64: expected a non-empty tuple"),
    (dict(axes=dict(dit=dict(width=()))), "sweep.axes.dit.width: (): expected a non-empty tuple"),
    (dict(axes=dict(dit=dict(width=(64, 64)))), "sweep.axes.dit.width: (64, 64) repeats a value"),
    (dict(axes=dict(dit=dict(width=(64, 128), mlp_dim=(176,))), combine="zip"),
     "combine='zip' needs axes of one length; got {'dit.mlp_dim': 1, 'dit.width': 2}"),
    (dict(axes=dict(dit=dict(width=(64, 128), depth=(2, 4)))),
     "sweep.x_axis: '' is not an axis; choose one of dit.depth, dit.width"),
    (dict(x_axis="dit.depth"), "sweep.x_axis: 'dit.depth' is not an axis; choose one of dit.width"),
    (dict(metrics=("accuracy",)), "sweep.metrics: 'accuracy': expected 'eval/<dotted key"),
    (dict(metrics="eval/accuracy.all"), "sweep.metrics: expected a tuple"),
    (dict(overrides=("dit.width",)), "sweep.overrides: ('dit.width',): expected a tuple of "
                                     "'key=value' strings"),
    (dict(base=""), "sweep.base: name the base experiment"),
    (dict(base="experiments/nope.py"), "sweep.base: experiment file 'experiments/nope.py' does "
                                       "not exist"),
    (dict(mode="sample"), "sweep.axes: ['dit.width'] would need retraining: a sample sweep only "
                          "changes sampling keys"),
    (dict(base_workdir="runs/x"), "sweep.base_workdir: only a mode='sample' sweep reuses"),
    (dict(mode="sample", axes=dict(eval=dict(guidance_scale=(1.0, 2.0))), base_workdir="runs/x",
          overrides=("dit.depth=2",)),
     "sweep.overrides: ['dit.depth=2']: base_workdir is already trained"),
    (dict(epochs=3), "unknown sweep keys ['epochs']"),
])
def test_a_bad_sweep_is_refused_naming_the_key(tmp_path, keys, message):
    with pytest.raises(SweepError) as err:
        load_sweep(sweep_file(tmp_path, **keys))
    assert message in str(err.value)


def test_sweep_file_errors(tmp_path):
    with pytest.raises(SweepError, match="sweep file 'nope.py' does not exist"):
        load_sweep("nope.py")
    with pytest.raises(SweepError, match="defines no get_sweep"):
        load_sweep(write_sweep(tmp_path, "x = 1\n"))
    with pytest.raises(SweepError, match="get_sweep\\(\\) returned a list"):
        load_sweep(write_sweep(tmp_path, "def get_sweep():\n    return [1]\n"))


def test_overrides_of_the_sweep_and_of_every_run_config(tmp_path):
    path = sweep_file(tmp_path)
    sweep = load_sweep(path, ["axes.dit.width=(32,96)", "combine=zip"], ["dit_train.steps=3"])
    assert tuple(sweep.axes.dit.width) == (32, 96) and sweep.combine == "zip"
    assert tuple(sweep.overrides) == ("dit_train.steps=3",)
    assert sweep.x_axis == "dit.width"  # the only axis
    with pytest.raises(SweepError, match=r"--sweep.axes.dit.depth=\(2,\): unknown sweep key "
                                         r"'axes.dit.depth'"):
        load_sweep(path, ["axes.dit.depth=(2,)"])
    with pytest.raises(SweepError, match="--sweep.axes.dit.width=64: .*expected tuple"):
        load_sweep(path, ["axes.dit.width=64"])


def test_sweep_file_argument(tmp_path):
    path = write_sweep(tmp_path, f"""
        def get_sweep(arg):
            return dict(base={SMOKE!r}, axes=dict(eval=dict(seed=tuple(range(int(arg))))),
                        mode="sample")
        """)
    assert [r.name for r in expand_runs(load_sweep(f"{path}:3"))] == ["seed-0", "seed-1", "seed-2"]


def test_cli_sweep_flags():
    assert split_sweep_flags(["--sweep.mode=sample", "--sweep.axes.eval.seed", "(1,2)"]) == [
        "mode=sample", "axes.eval.seed=(1,2)"]
    with pytest.raises(SweepError, match="unrecognized argument '--bogus'"):
        split_sweep_flags(["--bogus"])
    with pytest.raises(SweepError, match="--sweep.mode needs a value"):
        split_sweep_flags(["--sweep.mode"])


def test_product_and_zip_runs_and_their_names(tmp_path):
    product = load_sweep(sweep_file(tmp_path, axes=dict(dit=dict(width=(64, 128), depth=(2, 4))),
                                    x_axis="dit.width"))
    runs = expand_runs(product)
    # The x axis first, the last axis varying fastest.
    assert [r.name for r in runs] == ["width-64_depth-2", "width-64_depth-4", "width-128_depth-2",
                                      "width-128_depth-4"]
    assert runs[1].assignments == ("dit.width=64", "dit.depth=4")
    assert [r.name for r in expand_runs(product)] == [r.name for r in runs]  # stable
    zipped = load_sweep(sweep_file(tmp_path, axes=dict(dit=dict(width=(64, 128), depth=(2, 4))),
                                   x_axis="dit.width", combine="zip"))
    assert [r.name for r in expand_runs(zipped)] == ["width-64_depth-2", "width-128_depth-4"]


def test_run_names():
    assert run_name((("eval.guidance_scale", 7.5),)) == "guidance_scale-7.5"
    assert run_name((("dit.patch_size", (1, 2, 2)), ("flow.sampler", "euler"),
                     ("text.precompute", False))) == (
        "patch_size-1x2x2_sampler-euler_precompute-false")
    # A leaf two axes share keeps its dotted key.
    assert run_name((("dit.width", 64), ("data.width", 32))) == "dit.width-64_data.width-32"
    assert run_name((("optim.lr", 1e-05), ("data.source", "folder:/a b"))) == (
        "lr-1e-05_source-folder__a_b")
    long = run_name((("eval.prompts", tuple(range(60))),))
    assert len(long) == 100 and long != run_name((("eval.prompts", tuple(range(61))),))


def test_every_run_config_is_checked_before_anything_runs(tmp_path):
    # 4 heads do not divide width 66: that run is named, before any run starts.
    sweep = load_sweep(sweep_file(tmp_path, axes=dict(dit=dict(width=(64, 66)))))
    with pytest.raises(SweepError, match="run width-66: .*dit.num_heads"):
        check_run_configs(sweep, expand_runs(sweep))
    sweep = load_sweep(sweep_file(tmp_path, axes=dict(dit=dict(widht=(64,)))))
    with pytest.raises(SweepError, match="run widht-64: unknown config key 'dit.widht'"):
        check_run_configs(sweep, expand_runs(sweep))


def test_shipped_sweeps_load_on_the_real_quickstart(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_sweep("experiments/sweeps/cfg_scale.py")
    assert cfg.base == "experiments/quickstart.py" and cfg.mode == "sample"
    assert len(check_run_configs(cfg, expand_runs(cfg))) == 6
    width = load_sweep("experiments/sweeps/dit_width.py")
    names = list(check_run_configs(width, expand_runs(width)))
    assert width.mode == "train" and names == ["width-64_mlp_dim-176", "width-128_mlp_dim-352",
                                               "width-192_mlp_dim-528"]
    size = load_sweep("experiments/sweeps/dit_size.py")
    configs = check_run_configs(size, expand_runs(size))
    assert list(configs) == ["size-tiny", "size-small", "size-base"]
    shapes = [(c["dit"]["width"], c["dit"]["depth"]) for c in configs.values()]
    assert shapes == [(128, 4), (192, 8), (256, 12)]
