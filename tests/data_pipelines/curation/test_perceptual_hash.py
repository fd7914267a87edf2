"""Perceptual hashes: a re-encoded or noised copy is a near-duplicate, a different clip is not."""
import io

import numpy as np
from data_pipelines.media.sample_folder import moving_scene

from data_pipelines.clip_records import decode_mp4_bytes
from data_pipelines.curation import phash

from . import tiny_config


def _reencoded(video: np.ndarray) -> np.ndarray:
    """The clip through lossy H.264 (yuv420, crf 30) and back."""
    import av
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        stream.options = {"crf": "30"}
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return decode_mp4_bytes(buffer.getvalue())


def test_hamming_counts_differing_bits():
    assert phash.hamming(np.uint64(0b1011), np.uint64(0b0001)) == 2
    assert phash.hamming(np.uint64(2**64 - 1), np.uint64(0)) == 64
    np.testing.assert_array_equal(
        phash.hamming(np.array([1, 3], np.uint64), np.array([0, 0], np.uint64)), [1, 2])


def test_copies_are_near_duplicates_and_other_clips_are_not():
    cfg = tiny_config()
    rng = np.random.default_rng(0)
    clip = moving_scene(rng, 16, 64, 96, 8)
    hashes = phash.clip_hashes(clip, cfg.hash_frames)
    assert hashes.shape == (cfg.hash_frames,) and hashes.dtype == np.uint64
    noise = np.random.default_rng(1).normal(0, 6, clip.shape)
    noised = np.clip(clip + noise, 0, 255).astype(np.uint8)
    for copy in (_reencoded(clip), noised):
        assert phash.near_duplicate(hashes, phash.clip_hashes(copy, cfg.hash_frames),
                                    cfg.max_hamming)
    for _ in range(5):
        other = phash.clip_hashes(moving_scene(rng, 16, 64, 96, 8), cfg.hash_frames)
        assert not phash.near_duplicate(hashes, other, cfg.max_hamming)
        assert phash.hamming(hashes, other).max() > 2 * cfg.max_hamming


def test_one_differing_frame_is_enough_to_differ():
    a = np.array([1, 2, 3], np.uint64)
    b = np.array([1, 2, 3 ^ 0xFFFF], np.uint64)
    assert phash.near_duplicate(a, a, 0)
    assert not phash.near_duplicate(a, b, 6)
    assert not phash.near_duplicate(a, a[:2], 6)  # different counts never match


def test_an_image_has_its_hash_repeated():
    image = moving_scene(np.random.default_rng(2), 1, 64, 64, 1.0)
    hashes = phash.clip_hashes(image, 3)
    assert hashes.shape == (3,) and len(set(hashes.tolist())) == 1
    assert hashes[0] == phash.phash(image[0])
