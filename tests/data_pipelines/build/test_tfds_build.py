"""`mgen data build --source=tfds:NAME:SPLIT`: a tiny TFDS dataset, defined here and prepared as
array_record (no TensorFlow needed), read through TFDS's own reader and curated like a folder."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import shapes
from data_pipelines.build.driver import build_dataset
from data_pipelines.build.sources import open_source

from . import read_records, tiny_config

HEIGHT, WIDTH = 64, 96  # the tiny config's landscape bucket (32 x 48) at twice the size
# caption -> frames at the config's tfds_fps (16): 1.5 s and 2.5 s clips, an image (1 frame),
# a 0.5 s clip (too short) and a clip without a caption.
EXAMPLES = {"a red ball": 24, "a blue box": 40, "a still picture": 1, "a blink": 8, "": 24}


class TinyVideos(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    # No code folder to look for checksums in: TFDS would locate this test package through
    # importlib_resources, which TFDS 4.9 imports but does not install on Python >= 3.9.
    code_path = None

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(shape=(None, HEIGHT, WIDTH, 3), dtype=np.uint8),
            "caption": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, (caption, frames) in enumerate(EXAMPLES.items()):
            rng = np.random.default_rng(i)
            video = shapes.render_clip(("red", "blue", "green", "cyan", "yellow")[i], "circle",
                                       "right", frames=max(frames, 2), height=HEIGHT,
                                       width=WIDTH, rng=rng)[:frames]
            yield i, {"video": video, "caption": caption}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    TinyVideos(data_dir=str(root), file_format="array_record").download_and_prepare()
    return str(root)


def test_a_tfds_dataset_is_curated_into_records(data_dir, tmp_path):
    out = tmp_path / "dataset"
    summary = build_dataset("tfds:tiny_videos:train", str(out), tiny_config(),
                            tfds_data_dir=data_dir, show_progress=False)
    records = read_records(out)
    assert summary["seen"] == len(EXAMPLES)
    by_caption = {r["caption"]: r for r in records}
    assert set(by_caption) == {"a red ball", "a blue box", "a still picture"}
    assert by_caption["a red ball"]["video"].shape == (8, 32, 48, 3)     # 1 s at 8 fps
    assert by_caption["a blue box"]["video"].shape == (16, 32, 48, 3)    # 2 s
    assert by_caption["a still picture"]["is_image"]
    assert by_caption["a blue box"]["native_fps"] == 16.0
    assert all(r["source_id"].startswith("tiny_videos/train/") for r in records)
    assert summary["skipped"] == {"no_caption": 1, "too_short": 1}


def test_a_named_feature_must_exist(data_dir):
    source = open_source("tfds:tiny_videos", tfds_data_dir=data_dir)
    with pytest.raises(ValueError, match="tfds_video_feature='frames'"):
        source.items(tiny_config("tfds_video_feature=frames"))


def test_an_unknown_dataset_or_split_is_one_clear_error(data_dir):
    with pytest.raises(FileNotFoundError, match="no such prepared dataset"):
        open_source("tfds:no_such_videos", tfds_data_dir=data_dir).items(tiny_config())
    with pytest.raises(ValueError, match="no split 'test'"):
        open_source("tfds:tiny_videos:test", tfds_data_dir=data_dir).items(tiny_config())


def test_encoded_store_decodes_to_nearly_the_same_frames(data_dir, tmp_path):
    frames_out, encoded_out = tmp_path / "frames", tmp_path / "encoded"
    for out, store in ((frames_out, "frames"), (encoded_out, "encoded")):
        build_dataset("tfds:tiny_videos:train", str(out), tiny_config(f"store={store}"),
                      tfds_data_dir=data_dir, show_progress=False)
    stored = {r["source_id"]: r["video"] for r in read_records(frames_out)}
    decoded = {r["source_id"]: r["video"] for r in read_records(encoded_out)}
    assert stored.keys() == decoded.keys() and len(stored) == 3
    for source_id, video in stored.items():
        assert decoded[source_id].shape == video.shape
        error = np.abs(decoded[source_id].astype(int) - video.astype(int)).mean()
        assert error < 3.0, (source_id, error)
