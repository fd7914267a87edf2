"""Decoding real files, and curating the whole media-factory folder: every kind of media decodes,
every bad file fails with its reason, every good item gives clips, no two items collide."""
import itertools
import json
import os

import numpy as np
import pytest
from data_pipelines.media.sample_folder import make_media_folder, moving_scene

from data_pipelines.curation import phash, scenes
from data_pipelines.curation.curate import curate_media
from data_pipelines.media.decode import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaError,
                                         decode_array, decode_media)

from . import tiny_config

DECODE_REASONS = {"empty_file", "not_media", "truncated", "no_video_stream", "decode_error"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("media"))
    return root, make_media_folder(root, seed=0)


def _caption(root, relative):
    """What the folder source reads: captions.jsonl first, then the sidecar STEM.txt."""
    with open(os.path.join(root, "captions.jsonl")) as handle:
        captions = {row["path"]: row["caption"] for row in map(json.loads, handle)}
    sidecar = os.path.join(root, os.path.splitext(relative)[0] + ".txt")
    if relative not in captions and os.path.exists(sidecar):
        with open(sidecar) as handle:
            return handle.read().strip()
    return captions.get(relative)


def _curate_file(root, relative, cfg):
    """(clips, reasons): decode + curate one file, a MediaError turned into its reason."""
    try:
        media = decode_media(os.path.join(root, relative))
    except MediaError as error:
        return [], [error.reason]
    clips, rejections = curate_media(relative, media, _caption(root, relative), cfg)
    return clips, [r.reason for r in rejections]


def test_factory_makes_enough_varied_media(folder):
    root, expected = folder
    good, bad = expected["good"], expected["bad"]
    total = len(good) + len(bad) + len(expected["duplicates"])
    assert total >= 60 and len(bad) >= 0.1 * total
    extensions = {os.path.splitext(p)[1] for p in good}
    assert extensions == {".mp4", ".webm", ".mov", ".mkv", ".gif", ".jpg", ".png", ".webp"}
    videos = [e for e in good.values() if e["kind"] == "video"]
    assert {e["height"] > e["width"] for e in videos} == {True, False}
    assert any(e["height"] == e["width"] for e in videos)
    assert any(e["scene_cuts"] for e in videos) and len({e["fps"] for e in videos}) >= 5
    assert all(1.0 <= e["seconds"] <= 5.0 and 64 <= min(e["height"], e["width"])
               and max(e["height"], e["width"]) <= 96 for e in videos)
    assert set(bad.values()) >= DECODE_REASONS - {"decode_error"} | {"no_caption", "too_small"}
    for relative in good:
        assert _caption(root, relative) == good[relative]["caption"]  # jsonl and sidecars
    assert any(os.path.exists(os.path.join(root, os.path.splitext(p)[0] + ".txt"))
               for p in good)


def test_factory_is_deterministic(folder, tmp_path):
    _, expected = folder
    assert make_media_folder(str(tmp_path), seed=0) == expected


def test_every_good_file_decodes_to_what_was_written(folder):
    root, expected = folder
    for relative, want in expected["good"].items():
        media = decode_media(os.path.join(root, relative))
        assert media.kind == want["kind"], relative
        assert media.frames.dtype == np.uint8
        assert media.frames.shape == (want["frames"], want["height"], want["width"], 3), relative
        assert media.fps == want["fps"], relative
        if want["scene_cuts"]:
            cuts = scenes.scene_cuts(media.frames, tiny_config().scene_threshold)
            assert len(cuts) == len(want["scene_cuts"]), relative
            for cut, seconds in zip(cuts, want["scene_cuts"]):
                assert abs(cut - seconds * media.fps) <= 1, relative


def test_every_bad_file_fails_with_its_reason(folder):
    root, expected = folder
    cfg = tiny_config()
    for relative, reason in expected["bad"].items():
        clips, reasons = _curate_file(root, relative, cfg)
        assert clips == [] and set(reasons) == {reason}, (relative, reasons)


def test_every_good_item_gives_clips_and_only_duplicates_collide(folder):
    root, expected = folder
    cfg = tiny_config()
    clips = {}
    for relative in list(expected["good"]) + list(expected["duplicates"]):
        clips[relative], reasons = _curate_file(root, relative, cfg)
        assert clips[relative], (relative, reasons)
        assert set(reasons) <= {"too_short"}, (relative, reasons)  # only scene remainders
        want = expected["good"].get(relative)
        if want and want["kind"] == "image":
            assert clips[relative][0].video.shape[0] == 1
    for copy, original in expected["duplicates"].items():
        # One clip each, so dropping a duplicate clip drops the whole file.
        assert len(clips[copy]) == len(clips[original]) == 1
        assert phash.near_duplicate(clips[copy][0].phash, clips[original][0].phash,
                                    cfg.max_hamming)
    duplicate_pairs = {frozenset(pair) for pair in expected["duplicates"].items()}
    every_clip = [(relative, clip) for relative, item in clips.items() for clip in item]
    for (path_a, a), (path_b, b) in itertools.combinations(every_clip, 2):
        if frozenset((path_a, path_b)) not in duplicate_pairs:
            assert not phash.near_duplicate(a.phash, b.phash, cfg.max_hamming), (
                a.source_id, b.source_id)


def test_a_partly_written_video_keeps_what_decodes(folder, tmp_path):
    frames = moving_scene(np.random.default_rng(0), 32, 64, 64, 8)
    whole = tmp_path / "whole.webm"
    import av
    with av.open(str(whole), mode="w") as container:
        stream = container.add_stream("libvpx-vp9", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = whole.read_bytes()
    (tmp_path / "most.webm").write_bytes(data[:len(data) * 3 // 4])
    (tmp_path / "little.webm").write_bytes(data[:len(data) // 8])
    most = decode_media(str(tmp_path / "most.webm"))
    assert 8 <= len(most.frames) < 32 and most.fps == 8.0  # >= 1 s of 4 s: kept
    with pytest.raises(MediaError) as error:
        decode_media(str(tmp_path / "little.webm"))
    assert error.value.reason == "truncated"


def test_max_seconds_stops_decoding_early(folder):
    root, expected = folder
    relative = next(p for p, e in expected["good"].items() if e["seconds"] >= 3)
    media = decode_media(os.path.join(root, relative), max_seconds=1.0)
    assert len(media.frames) == int(np.ceil(expected["good"][relative]["fps"]))


def test_other_failures_have_reasons(tmp_path):
    with pytest.raises(MediaError) as error:
        decode_media(str(tmp_path / "missing.mp4"))
    assert error.value.reason == "not_found"
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MediaError) as error:
        decode_media(str(tmp_path / "notes.txt"))
    assert error.value.reason == "unsupported_extension"
    assert ".gif" in VIDEO_EXTENSIONS and ".webp" in IMAGE_EXTENSIONS


def test_decode_array_checks_and_normalises():
    clip = np.zeros((5, 64, 64, 3), np.uint8)
    assert decode_array(clip, 16.0).kind == "video" and decode_array(clip, 16.0).fps == 16.0
    image = decode_array(np.zeros((64, 64, 3), np.uint8), 0.0)
    assert image.kind == "image" and image.frames.shape == (1, 64, 64, 3) and image.fps == 0.0
    assert decode_array(np.zeros((2, 8, 8, 1), np.uint8), 8.0).frames.shape == (2, 8, 8, 3)
    assert decode_array(np.zeros((2, 8, 8, 4), np.uint8), 8.0).frames.shape == (2, 8, 8, 3)
    for frames, fps in ((clip.astype(np.float32), 16.0), (clip[..., :2], 16.0),
                        (clip[:, :0], 16.0), (clip, 0.0), (clip, float("nan")),
                        (np.zeros((64, 64), np.uint8), 0.0)):
        with pytest.raises(MediaError) as error:
            decode_array(frames, fps)
        assert error.value.reason == "bad_array"
