"""PhaseCheckpointer on damaged and asynchronous checkpoints: a damaged newest step is named and
the previous good one restored; none good is a clear error; an asynchronous save holds the state
and data position of its call even when the arrays are donated right after."""
import glob
import json
import os
import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.checkpointing.manager import (DamagedCheckpointError, DataLayoutError,
                                           PhaseCheckpointer)

# Over OCDBT's inline limit (~100 bytes), so each array lives in a data file of its own.
SHAPES = {"w": (701,), "b": (31, 53)}


def _state(offset: float) -> dict:
    return {name: jnp.full(shape, offset, jnp.float32) + jnp.arange(np.prod(shape)).reshape(shape)
            for name, shape in SHAPES.items()}


def _abstract():
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                        _state(0.0))


def _iterator():
    return iter(grain.MapDataset.range(1000).shuffle(seed=7).batch(3).to_iter_dataset())


def _two_checkpoints(directory, asynchronous=False):
    """Steps 4 and 8, the iterator advanced by one batch before each; returns the batches that
    follow each saved position."""
    ckpt = PhaseCheckpointer(str(directory), keep=3, asynchronous=asynchronous)
    it, following = _iterator(), {}
    for step in (4, 8):
        next(it)
        ckpt.save(step, _state(step), iterator=it, meta={"step": step})
        following[step] = next(_copy_position(it))
    ckpt.wait()
    return following


def _copy_position(it):
    twin = _iterator()
    twin.set_state(it.get_state())
    return twin


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


DAMAGE = {
    "truncated array data": lambda d: [_truncate(p) for p in
                                       glob.glob(str(d / "8" / "state" / "ocdbt.process_0" / "d" / "*"))],
    "deleted state item": lambda d: shutil.rmtree(d / "8" / "state"),
    "truncated iterator state": lambda d: _truncate(d / "8" / "data" / "process_0-of-1.json"),
    "deleted array manifest": lambda d: os.remove(d / "8" / "state" / "manifest.ocdbt"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_falls_back_to_the_previous(tmp_path, capsys, damage):
    directory = tmp_path / "ckpt"
    following = _two_checkpoints(directory)
    DAMAGE[damage](directory)
    ckpt = PhaseCheckpointer(str(directory), keep=3, asynchronous=True)
    it = _iterator()
    step, state, frozen, meta = ckpt.restore_latest_good(_abstract(), iterator=it)
    assert step == 4 and meta == {"step": 4} and frozen is None
    for name in SHAPES:
        np.testing.assert_array_equal(np.asarray(state[name]), np.asarray(_state(4)[name]))
    np.testing.assert_array_equal(next(it), following[4])  # the data position of step 4
    err = capsys.readouterr().err
    assert f"checkpoint step 8 in {directory} is damaged" in err and "restoring step 4" in err
    # Moved aside, so the resumed run can write step 8 again.
    assert ckpt.all_steps() == [4] and (tmp_path / "ckpt.damaged" / "8").is_dir()
    ckpt.save(8, _state(80), iterator=it, meta={"step": 8})
    ckpt.wait()
    assert ckpt.all_steps() == [4, 8]


def test_intact_newest_is_restored_untouched(tmp_path, capsys):
    directory = tmp_path / "ckpt"
    following = _two_checkpoints(directory)
    it = _iterator()
    step, state, _, _ = PhaseCheckpointer(str(directory)).restore_latest_good(_abstract(),
                                                                               iterator=it)
    assert step == 8
    np.testing.assert_array_equal(np.asarray(state["w"]), np.asarray(_state(8)["w"]))
    np.testing.assert_array_equal(next(it), following[8])
    assert "damaged" not in capsys.readouterr().err
    assert not (tmp_path / "ckpt.damaged").exists()


def test_no_checkpoint_is_none(tmp_path):
    assert PhaseCheckpointer(str(tmp_path / "empty")).restore_latest_good(_abstract()) is None


def test_all_damaged_is_a_clear_error(tmp_path, capsys):
    directory = tmp_path / "ckpt"
    _two_checkpoints(directory)
    for step in ("4", "8"):
        shutil.rmtree(directory / step / "state")
    ckpt = PhaseCheckpointer(str(directory))
    with pytest.raises(DamagedCheckpointError) as info:
        ckpt.restore_latest_good(_abstract(), iterator=_iterator())
    message = str(info.value)
    assert f"no checkpoint in {directory} can be restored" in message
    assert "step 8:" in message and "step 4:" in message
    assert isinstance(info.value, ValueError)  # the CLI's one-line user errors
    assert "no older checkpoint left" in capsys.readouterr().err
    assert ckpt.all_steps() == [4, 8]  # nothing moved when nothing could be restored


def test_async_save_holds_the_state_and_position_of_its_call(tmp_path):
    """The arrays are donated (deleted) by the next step right after save returns, and the
    iterator moves on: the checkpoint still holds both as of the save."""
    ckpt = PhaseCheckpointer(str(tmp_path / "ckpt"), asynchronous=True)
    state, it = _state(3.0), _iterator()
    expected = jax.tree.map(np.asarray, _state(3.0))  # not views of the donated buffers
    next(it)
    step = jax.jit(lambda s: jax.tree.map(lambda a: a * 2.0 + 1.0, s), donate_argnums=0)
    ckpt.save(1, state, iterator=it, meta={"k": 1})
    saved, state = state, step(state)
    after_save = [next(it) for _ in range(3)]
    jax.block_until_ready(state)
    assert all(a.is_deleted() for a in jax.tree.leaves(saved))  # really donated
    restored_it = _iterator()
    _, restored, _, meta = ckpt.restore_latest_good(_abstract(), iterator=restored_it)
    ckpt.close()
    assert meta == {"k": 1}
    for name in SHAPES:
        np.testing.assert_array_equal(np.asarray(restored[name]), expected[name])
    np.testing.assert_array_equal(np.stack([next(restored_it) for _ in range(3)]),
                                  np.stack(after_save))


# ---- another process count --------------------------------------------------------------------

def _as_written_by(directory, step: int, count: int, state: dict) -> None:
    """Make step's data folder look written by `count` processes, each at `state`."""
    data = directory / str(step) / "data"
    for f in data.glob("process_*-of-*.json"):
        f.unlink()
    for i in range(count):
        (data / f"process_{i}-of-{count}.json").write_text(json.dumps(state))


def test_data_position_of_another_process_count_is_rescaled(tmp_path):
    """Global-order positions: 2 processes at 6 rows each = 1 process at 12 rows. Not damage."""
    ckpt = PhaseCheckpointer(str(tmp_path), keep=3)
    ckpt.save(4, _state(4), iterator=_iterator(), meta={"step": 4})
    ckpt.wait()
    _as_written_by(tmp_path, 4, 2, {"next_index": 6})
    it = _iterator()
    step, state, _, _ = PhaseCheckpointer(str(tmp_path)).restore_latest_good(_abstract(),
                                                                           iterator=it)
    assert step == 4 and it.get_state() == {"next_index": 12}
    np.testing.assert_array_equal(state["w"], _state(4)["w"])


def test_per_process_stream_state_of_another_count_is_refused_by_name(tmp_path):
    ckpt = PhaseCheckpointer(str(tmp_path), keep=3)
    ckpt.save(4, _state(4), iterator=_iterator(), meta={"step": 4})
    ckpt.wait()
    _as_written_by(tmp_path, 4, 2, {"mixture": [3, 1], "next_index": 6})
    with pytest.raises(DataLayoutError, match="written by 2 processes and this run has 1"):
        PhaseCheckpointer(str(tmp_path)).restore_latest_good(_abstract(), iterator=_iterator())
    assert os.path.isdir(tmp_path / "4"), "a checkpoint of another layout is not damaged"
