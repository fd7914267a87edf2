"""curate_media on in-memory items: the stages in order, the clip contract, every rejection."""
import numpy as np
import pytest
from data_pipelines.media.sample_folder import moving_scene

from data_pipelines.curation import phash, scenes
from data_pipelines.curation.curate import CuratedClip, Rejection, curate_media
from data_pipelines.media.decode import decode_array

from . import tiny_config


def _video(seconds_per_scene, fps, height=64, width=96, seed=0):
    """Scenes of the given lengths joined by hard cuts (alternately dark and light)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([moving_scene(rng, int(round(s * fps)), height, width, fps,
                                        inverted=bool(i % 2))
                           for i, s in enumerate(seconds_per_scene)])


def _span(source_id):
    first, last = source_id.split("#")[1].split("-")
    return int(first), int(last)


def test_clips_fill_buckets_within_the_duration_range_and_never_cross_a_cut():
    cfg = tiny_config()
    fps = 30.0
    frames = _video([2.5, 0.6, 5.3], fps)  # cuts at frames 75 and 93
    clips, rejections = curate_media("v.mp4", decode_array(frames, fps), "a disc", cfg)
    cuts = [75, 93]
    assert scenes.scene_cuts(frames, cfg.scene_threshold) == cuts
    # Scene 1 (2.5 s): one 2 s clip. Scene 2 (0.6 s): too short. Scene 3 (5.3 s): 4 s + 1.3 s
    # pieces -> a 4 s and a 1 s clip.
    assert [c.bucket for c in clips] == ["v16x32x48", "v32x32x48", "v8x32x48"]
    for clip in clips:
        assert isinstance(clip, CuratedClip)
        first, last = _span(clip.source_id)
        assert not any(first < cut <= last for cut in cuts)  # within one scene
        frames_out = clip.video.shape[0]
        assert cfg.min_seconds <= frames_out / clip.fps <= cfg.max_seconds
        assert clip.video.shape == (frames_out, 32, 48, 3) and clip.video.dtype == np.uint8
        assert clip.fps == cfg.target_fps and clip.native_fps == fps
        # The span is the native frames shown: (frames - 1) target steps long.
        assert (last - first) / fps == pytest.approx((frames_out - 1) / cfg.target_fps,
                                                     abs=0.5 / fps)
        assert clip.phash.shape == (cfg.hash_frames,) and clip.phash.dtype == np.uint64
        assert cfg.min_motion <= clip.motion <= cfg.max_motion
        assert clip.caption == "a disc"
    assert [_span(c.source_id)[0] for c in clips] == [0, 93, 213]
    assert [(r.source_id, r.reason) for r in rejections] == [("v.mp4#75-92", "too_short")]


def test_resampling_keeps_time():
    cfg = tiny_config()
    clips, _ = curate_media("v", decode_array(_video([2.2], 30.0), 30.0), "x", cfg)
    (clip,) = clips
    # 2.2 s at 30 fps -> 17 frames at 8 fps -> the 2 s bucket: 16 frames spanning 2 s.
    assert clip.video.shape[0] == 16 and clip.video.shape[0] / clip.fps == 2.0
    assert clip.source_id == "v#0-56"  # frame 15 at 8 fps = 1.875 s = native frame 56.25


def test_trim_seconds_drops_the_start():
    cfg = tiny_config()
    cfg.trim_seconds = 1.0
    clips, _ = curate_media("v", decode_array(_video([3.0], 10.0), 10.0), "x", cfg)
    # From 1 s on: 2 s left -> the 2 s bucket, 16 frames at 8 fps ending at 2.875 s.
    assert [c.source_id for c in clips] == ["v#10-29"]
    _, rejections = curate_media("v", decode_array(_video([0.8], 10.0), 10.0), "x", cfg)
    assert [r.reason for r in rejections] == ["too_short"]


def test_static_and_jittery_clips_are_rejected():
    cfg = tiny_config()
    still = np.repeat(moving_scene(np.random.default_rng(0), 1, 64, 64, 8), 24, axis=0)
    noise = np.random.default_rng(1).integers(0, 256, (24, 64, 64, 3), dtype=np.uint8)
    for frames, reason in ((still, "static"), (noise, "jittery")):
        clips, rejections = curate_media("v", decode_array(frames, 12.0), "x", cfg)
        assert clips == [] and [(r.source_id, r.reason) for r in rejections] == [
            ("v#0-23", reason)]


def test_images_become_one_frame_clips_in_the_nearest_image_bucket():
    cfg = tiny_config()
    for (height, width), name in (((64, 64), "i32x32"), ((70, 100), "i32x48"),
                                  ((96, 64), "i48x32")):
        image = moving_scene(np.random.default_rng(0), 1, height, width, 1.0)[0]
        clips, rejections = curate_media("a.png", decode_array(image, 0.0), "still", cfg)
        (clip,) = clips
        assert rejections == [] and clip.bucket == name and clip.source_id == "a.png"
        bucket = next(b for b in cfg.buckets if b["name"] == name)
        assert clip.video.shape == (1, bucket["height"], bucket["width"], 3)
        assert clip.motion == 0.0 and clip.native_fps == 0.0 and clip.fps == cfg.target_fps
        assert clip.phash.shape == (cfg.hash_frames,)
        assert clip.phash[0] == phash.phash(clip.video[0])
    cfg.images = False
    _, rejections = curate_media("a.png", decode_array(image, 0.0), "still", cfg)
    assert [r.reason for r in rejections] == ["images_disabled"]


@pytest.mark.parametrize("caption", [None, "", "   \n"])
def test_no_caption(caption):
    cfg = tiny_config()
    media = decode_array(_video([2.0], 8.0), 8.0)
    assert curate_media("v", media, caption, cfg) == (
        [], [Rejection("v", "no_caption", "no caption found for this item")])
    cfg.require_caption = False
    clips, _ = curate_media("v", media, caption, cfg)
    assert len(clips) == 1 and clips[0].caption == ""


@pytest.mark.parametrize("height, width", [(63, 96), (96, 63), (40, 40)])
def test_too_small(height, width):
    for media in (decode_array(_video([2.0], 8.0, height, width), 8.0),
                  decode_array(np.zeros((height, width, 3), np.uint8), 0.0)):
        clips, rejections = curate_media("v", media, "x", tiny_config())
        assert clips == [] and [r.reason for r in rejections] == ["too_small"]


def test_caption_is_checked_before_size():
    tiny = decode_array(np.zeros((8, 8, 3), np.uint8), 0.0)
    assert curate_media("v", tiny, None, tiny_config())[1][0].reason == "no_caption"


def test_bad_arrays_are_rejections_not_errors():
    from data_pipelines.media.decode import DecodedMedia
    bad = DecodedMedia(frames=np.zeros((4, 64, 64), np.float32), fps=8.0, kind="video")
    assert curate_media("v", bad, "x", tiny_config())[1][0].reason == "bad_array"


def test_camera_label_is_passed_through():
    clips, _ = curate_media("v", decode_array(_video([1.0], 8.0), 8.0), "x", tiny_config(),
                            camera="pan left")
    assert [c.camera for c in clips] == ["pan left"]


def test_same_input_same_clips():
    cfg = tiny_config()
    media = decode_array(_video([1.5, 2.5], 12.0), 12.0)
    first, second = (curate_media("v", media, "x", cfg)[0] for _ in range(2))
    assert [c.source_id for c in first] == [c.source_id for c in second]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.video, b.video)
        np.testing.assert_array_equal(a.phash, b.phash)


def test_a_bucket_with_its_own_rate_resamples_the_clip_to_it():
    """A two-rate table (as the fine-tuning set's 16 / 24 fps): the 4 s scene fills the 8 fps
    bucket (the longest duration it covers), the 2.5 s scene the 12 fps one, each at its rate."""
    cfg = tiny_config()
    cfg.update(min_seconds=1.0, max_seconds=4.0)
    cfg.buckets = [dict(name="slow", kind="video", frames=32, height=32, width=48, seconds=4.0,
                        fps=8.0),
                   dict(name="fast", kind="video", frames=24, height=32, width=48, seconds=2.0,
                        fps=12.0)]
    fps = 24.0
    clips, rejections = curate_media("v", decode_array(_video([4.0, 2.5], fps), fps), "x", cfg)
    assert not rejections
    assert [(c.bucket, c.fps, c.video.shape[0]) for c in clips] == [("slow", 8.0, 32),
                                                                     ("fast", 12.0, 24)]
    slow, fast = (_span(c.source_id) for c in clips)
    assert (slow[1] - slow[0]) / fps == pytest.approx(31 / 8, abs=0.5 / fps)
    assert (fast[1] - fast[0]) / fps == pytest.approx(23 / 12, abs=0.5 / fps)
