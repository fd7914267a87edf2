"""Tests for the Shapes ArrayRecord writer and the Grain training pipeline."""
import contextlib
import json
import os

import numpy as np
import pytest

from data_pipelines import shapes
from data_pipelines.grain_pipeline import holdout_batches, make_train_iterator
from data_pipelines.shapes_writer import (decode_record, encode_record, load_manifest,
                                          shard_paths, write_shapes_dataset)

NUM_CLIPS = 23
PARAMS = dict(num_clips=NUM_CLIPS, num_shards=3, frames=3, height=17, width=19, seed=5)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("shapes") / "train"
    write_shapes_dataset(out_dir, **PARAMS)
    return out_dir


@contextlib.contextmanager
def _iterator(data_dir, **kwargs):
    iterator = make_train_iterator(data_dir, **kwargs)
    try:
        yield iterator
    finally:
        iterator.close()  # stop the prefetch thread


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_record_round_trip():
    video = np.random.default_rng(0).integers(0, 256, (5, 17, 21, 3), dtype=np.uint8)
    record = decode_record(encode_record(video, "a red box heading up", "red", "square", "up", 7))
    np.testing.assert_array_equal(record["video"], video)
    assert record["video"].flags.writeable
    assert {k: record[k] for k in ("caption", "colour", "shape", "direction", "index")} == {
        "caption": "a red box heading up", "colour": "red", "shape": "square",
        "direction": "up", "index": 7}


def test_writer_manifest_and_records(data_dir):
    manifest = load_manifest(data_dir)
    assert manifest["parameters"] == PARAMS
    assert manifest["num_records"] == NUM_CLIPS
    assert [s["num_records"] for s in manifest["shards"]] == [8, 7, 8]
    assert all(not os.path.isabs(s["path"]) for s in manifest["shards"])
    assert not [p for p in os.listdir(data_dir.parent) if ".tmp-" in p]  # no temp leftovers

    from array_record.python.array_record_module import ArrayRecordReader
    train = set(shapes.train_combos())
    indices = []
    for path, entry in zip(shard_paths(data_dir), manifest["shards"]):
        reader = ArrayRecordReader(path)
        records = [decode_record(r) for r in reader.read_all()]
        reader.close()
        assert len(records) == entry["num_records"]
        for record in records:
            combo = (record["colour"], record["shape"], record["direction"])
            assert combo in train
            assert shapes.parse_prompt(record["caption"]) == combo
            assert record["video"].shape == (3, 17, 19, 3) and record["video"].max() > 150
            indices.append(record["index"])
    assert indices == list(range(NUM_CLIPS))
    assert len({tuple(c) for c in manifest["held_out_combos"]} & train) == 0


def test_writer_is_idempotent_and_refuses_other_parameters(data_dir):
    manifest_path = data_dir / "manifest.json"
    before = manifest_path.stat().st_mtime_ns
    again = write_shapes_dataset(data_dir, **PARAMS)
    assert again == json.loads(manifest_path.read_text())
    assert manifest_path.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="parameters"):
        write_shapes_dataset(data_dir, **{**PARAMS, "seed": 6})


def test_writer_refuses_non_empty_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(FileExistsError):
        write_shapes_dataset(tmp_path, **PARAMS)


def test_clip_content_does_not_depend_on_sharding(data_dir, tmp_path):
    other = tmp_path / "one_shard"
    write_shapes_dataset(other, **{**PARAMS, "num_shards": 1})
    with _iterator(data_dir, batch_size=NUM_CLIPS, seed=0) as a, \
         _iterator(other, batch_size=NUM_CLIPS, seed=3) as b:
        first, second = next(a), next(b)
    order_a, order_b = np.argsort(first["index"]), np.argsort(second["index"])
    np.testing.assert_array_equal(first["video"][order_a], second["video"][order_b])
    np.testing.assert_array_equal(first["caption"][order_a], second["caption"][order_b])


def test_batches_have_expected_shapes_and_types(data_dir):
    with _iterator(data_dir, batch_size=5, seed=0) as iterator:
        batches = _take(iterator, 6)  # more than one epoch: repeats forever
    for batch in batches:
        assert batch["video"].shape == (5, 3, 17, 19, 3) and batch["video"].dtype == np.uint8
        for key in ("caption", "colour", "shape", "direction"):
            assert batch[key].shape == (5,) and batch[key].dtype.kind == "U"
        assert batch["index"].shape == (5,)
        for i in range(5):
            combo = (batch["colour"][i], batch["shape"][i], batch["direction"][i])
            assert shapes.parse_prompt(str(batch["caption"][i])) == combo


def test_transform_is_applied_per_record(data_dir):
    def add_caption_length(record):
        return {**record, "caption_length": np.int32(len(record["caption"]))}

    with _iterator(data_dir, batch_size=3, seed=0, transform=add_caption_length) as iterator:
        batch = next(iterator)
    np.testing.assert_array_equal(batch["caption_length"], [len(c) for c in batch["caption"]])


def _epochs_of_indices(data_dir, epochs, **kwargs):
    """Record indices in stream order, split into epochs (batch_size 1)."""
    with _iterator(data_dir, batch_size=1, **kwargs) as iterator:
        first = int(next(iterator)["index"][0])
        stream = [first]
        per_epoch = None
        while per_epoch is None or len(stream) < per_epoch * epochs:
            stream.append(int(next(iterator)["index"][0]))
            if per_epoch is None and len(set(stream)) < len(stream):
                per_epoch = len(stream) - 1  # first repeat ends epoch 1
    return [stream[e * per_epoch:(e + 1) * per_epoch] for e in range(epochs)]


@pytest.mark.parametrize("process_count", [2, 3])
def test_global_batches_do_not_depend_on_the_process_count(data_dir, process_count):
    """Process i's batch k is rows [i*L, (i+1)*L) of the one-process global batch k, across
    epoch boundaries (23 records, global batch 6: epochs end mid-batch)."""
    with _iterator(data_dir, batch_size=6, seed=3) as one:
        expected = _take(one, 9)
    local = 6 // process_count
    shares = []
    for i in range(process_count):
        with _iterator(data_dir, batch_size=local, seed=3, process_index=i,
                       process_count=process_count) as it:
            shares.append(_take(it, 9))
    for k, batch in enumerate(expected):
        for key in batch:
            np.testing.assert_array_equal(
                np.concatenate([share[k][key] for share in shares]), batch[key], err_msg=key)


def test_holdout_is_never_trained_on_and_is_the_validation_set(data_dir):
    stream = []
    with _iterator(data_dir, batch_size=4, seed=0, holdout=5) as it:
        for batch in _take(it, 12):  # 48 records: more than two epochs of 18
            stream.extend(int(i) for i in batch["index"])
    assert set(stream) == set(range(NUM_CLIPS - 5))
    full = holdout_batches(data_dir, holdout=5, batch_size=2)
    assert [list(b["index"]) for b in full] == [[18, 19], [20, 21]]  # the last one dropped
    shares = [holdout_batches(data_dir, holdout=5, batch_size=1, process_index=i,
                              process_count=2) for i in range(2)]
    assert [[int(s[k]["index"][0]) for s in shares] for k in range(2)] == [[18, 19], [20, 21]]
    with pytest.raises(ValueError, match="less than one global batch"):
        holdout_batches(data_dir, holdout=3, batch_size=2, process_count=2)
    with pytest.raises(ValueError, match="holdout 23"):
        make_train_iterator(data_dir, batch_size=1, seed=0, holdout=NUM_CLIPS)


def test_each_epoch_is_a_new_permutation_and_seed_changes_order(data_dir):
    first, second = _epochs_of_indices(data_dir, 2, seed=0)
    assert sorted(first) == sorted(second) == list(range(NUM_CLIPS))
    assert first != second
    other_seed, _ = _epochs_of_indices(data_dir, 2, seed=1)
    assert other_seed != first


@pytest.mark.parametrize("process_index", [0, 1])
def test_state_restore_resumes_exactly(data_dir, process_index):
    kwargs = dict(batch_size=3, seed=11, process_index=process_index, process_count=2)
    with _iterator(data_dir, **kwargs) as original:
        _take(original, 4)  # past the end of the first epoch (11-12 records)
        state = json.loads(json.dumps(original.get_state()))  # checkpointable as JSON
        expected = _take(original, 5)
    with _iterator(data_dir, **kwargs) as restored:
        _take(restored, 1)  # restoring must also rewind an iterator that moved
        restored.set_state(state)
        _assert_same_batches(_take(restored, 5), expected)
    with _iterator(data_dir, **kwargs) as fresh:
        # Without set_state a fresh iterator starts from the beginning instead.
        assert not np.array_equal(next(fresh)["index"], expected[0]["index"])


def test_invalid_arguments_raise(data_dir, tmp_path):
    with pytest.raises(ValueError):
        make_train_iterator(data_dir, batch_size=2, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError):
        make_train_iterator(data_dir, batch_size=NUM_CLIPS + 1, seed=0)
    with pytest.raises(FileNotFoundError):
        make_train_iterator(tmp_path, batch_size=2, seed=0)
