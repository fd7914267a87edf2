"""Bucket choice over data_tiny's table: nearest aspect, then the longest duration covered."""
import pytest

from data_pipelines.curation import buckets

from . import tiny_config


@pytest.mark.parametrize("height, width, name", [
    (64, 64, "v32x32x32"), (90, 96, "v32x32x32"),      # square, near-square
    (64, 96, "v32x32x48"), (72, 128, "v32x32x48"),     # landscape 3:2, 16:9
    (96, 64, "v32x48x32"), (1920, 1080, "v32x48x32"),  # portrait 2:3, 9:16
])
def test_nearest_aspect_ratio(height, width, name):
    bucket = buckets.choose_video_bucket(tiny_config().buckets, 40, height, width)
    assert bucket["name"] == name


@pytest.mark.parametrize("frames, expected", [(8, 8), (15, 8), (16, 16), (31, 16), (32, 32),
                                              (90, 32)])
def test_longest_duration_the_clip_covers(frames, expected):
    bucket = buckets.choose_video_bucket(tiny_config().buckets, frames, 64, 96)
    assert bucket["frames"] == expected and bucket["kind"] == "video"


def test_shorter_than_every_bucket_is_none():
    assert buckets.choose_video_bucket(tiny_config().buckets, 7, 64, 64) is None


def test_buckets_outside_the_duration_range_are_not_chosen():
    cfg = tiny_config()
    assert buckets.choose_video_bucket(cfg.buckets, 40, 64, 64, max_seconds=2.0)["frames"] == 16
    assert buckets.choose_video_bucket(cfg.buckets, 12, 64, 64, min_seconds=2.0) is None


def test_log_aspect_is_symmetric():
    table = [dict(name="wide", kind="video", frames=8, height=32, width=64, seconds=1.0),
             dict(name="tall", kind="video", frames=8, height=64, width=32, seconds=1.0)]
    # 1:1 is equally far from 2:1 and 1:2; a tie goes to the first in the table.
    assert buckets.choose_video_bucket(table, 8, 50, 50)["name"] == "wide"
    assert buckets.choose_video_bucket(table, 8, 50, 51)["name"] == "wide"
    assert buckets.choose_video_bucket(table, 8, 51, 50)["name"] == "tall"
    assert buckets.choose_video_bucket(table[::-1], 8, 50, 50)["name"] == "tall"


@pytest.mark.parametrize("height, width, name", [(64, 64, "i32x32"), (64, 96, "i32x48"),
                                                 (96, 64, "i48x32")])
def test_images_go_to_image_buckets(height, width, name):
    assert buckets.choose_image_bucket(tiny_config().buckets, height, width)["name"] == name
    assert buckets.choose_image_bucket([], height, width) is None


def test_buckets_with_their_own_rates_take_the_longest_duration_covered():
    """Movie Gen's fine-tuning table: 256 frames at 16 fps (16 s) or at 24 fps (10.67 s)."""
    from mgen_jax.configs.data_build import sft_bucket_table
    table = sft_bucket_table(aspects=((48, 48),))

    def clip(seconds):  # frames a clip of `seconds` gives at a rate
        return lambda fps: int(seconds * fps + 1e-9)

    assert buckets.choose_video_bucket(table, clip(16.0), 64, 64)["name"] == "v256x48x48_16fps"
    assert buckets.choose_video_bucket(table, clip(12.0), 64, 64)["name"] == "v256x48x48_24fps"
    assert buckets.choose_video_bucket(table, clip(10.7), 64, 64)["fps"] == 24.0
    assert buckets.choose_video_bucket(table, clip(10.6), 64, 64) is None  # 254 frames at 24
    # A table without rates: the target rate for every bucket.
    assert buckets.bucket_fps(tiny_config().buckets[0], 8.0) == 8.0
