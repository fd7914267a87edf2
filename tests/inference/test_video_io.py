"""Tests for mp4 writing/reading and PNG contact sheets."""
import av
import numpy as np
import pytest
from PIL import Image

from data_pipelines import shapes
from mgen_jax.evaluation.attributes import measure_attributes
from mgen_jax.inference.video_io import read_mp4, write_contact_sheet, write_mp4


def _smooth_video(frames, height, width):
    t = np.arange(frames)[:, None, None]
    y = np.arange(height)[None, :, None]
    x = np.arange(width)[None, None, :]
    channels = [128 + 80 * np.sin(0.2 * x + 0.3 * t + 0 * y),
                128 + 80 * np.cos(0.15 * y - 0.2 * t + 0 * x),
                110 + 60 * np.sin(0.1 * (x + y) + 0 * t)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


@pytest.mark.parametrize("frames,height,width", [(16, 32, 32), (17, 33, 45), (2, 16, 17)])
def test_mp4_round_trip(tmp_path, frames, height, width):
    video = _smooth_video(frames, height, width)
    path = tmp_path / "clip.mp4"
    write_mp4(path, video, fps=12)
    decoded = read_mp4(path)
    assert decoded.shape == video.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(np.int16) - video).mean() < 6.0
    # A standard H.264 / yuv420p file with even dimensions that PyAV reads.
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (width + width % 2, height + height % 2)
        assert stream.average_rate == 12
        assert sum(1 for _ in container.decode(video=0)) == frames


def test_mp4_scale_upsamples_by_an_integer_factor(tmp_path):
    video = _smooth_video(5, 17, 19)
    write_mp4(tmp_path / "big.mp4", video, scale=3)
    decoded = read_mp4(tmp_path / "big.mp4")
    assert decoded.shape == (5, 51, 57, 3)
    upscaled = video.repeat(3, axis=1).repeat(3, axis=2)
    assert np.abs(decoded.astype(np.int16) - upscaled).mean() < 6.0


def test_shapes_clip_survives_encoding(tmp_path):
    combo = ("magenta", "triangle", "right")
    clip = shapes.render_clip(*combo, frames=16, height=32, width=32,
                              rng=np.random.default_rng(1))
    write_mp4(tmp_path / "shape.mp4", clip)
    measured = measure_attributes(read_mp4(tmp_path / "shape.mp4"))
    assert (measured["colour"], measured["shape"], measured["direction"]) == combo


def test_write_mp4_rejects_non_uint8(tmp_path):
    with pytest.raises(ValueError):
        write_mp4(tmp_path / "bad.mp4", np.zeros((4, 16, 16, 3), np.float32))


def test_contact_sheet_layout_and_content(tmp_path):
    short = _smooth_video(5, 17, 19)
    long = _smooth_video(17, 17, 19)[::-1].copy()
    path = tmp_path / "sheet.png"
    size = write_contact_sheet(path, [short, long], ["first row", "second"],
                               frames_per_video=3, scale=2)
    gap, label = 2, 14
    expected = (gap + 3 * (19 * 2 + gap), gap + 2 * (label + 17 * 2 + gap))
    image = np.asarray(Image.open(path).convert("RGB"))
    assert size == expected == (image.shape[1], image.shape[0])
    # Row 2, third tile = the last frame of the second video, upscaled 2x.
    top, left = gap + (label + 34 + gap) + label, gap + 2 * (38 + gap)
    tile = image[top:top + 34, left:left + 38]
    np.testing.assert_array_equal(tile, long[-1].repeat(2, axis=0).repeat(2, axis=1))
    # Row 1, middle tile = frame 2 of 0..4 (evenly spaced picks 0, 2, 4).
    tile = image[gap + label:gap + label + 34, gap + 40:gap + 40 + 38]
    np.testing.assert_array_equal(tile, short[2].repeat(2, axis=0).repeat(2, axis=1))
    # Labels are drawn in the band above each row; without labels it stays empty.
    assert image[gap:gap + label, :80].max() > 150
    write_contact_sheet(tmp_path / "plain.png", [short, long], None, frames_per_video=3)
    plain = np.asarray(Image.open(tmp_path / "plain.png").convert("RGB"))
    assert plain[gap:gap + label, :80].max() < 50


def test_contact_sheet_rejects_mismatched_labels(tmp_path):
    with pytest.raises(ValueError):
        write_contact_sheet(tmp_path / "x.png", [_smooth_video(3, 16, 16)], ["a", "b"])


def test_contact_sheet_puts_a_prompts_samples_on_one_row(tmp_path):
    videos = [_smooth_video(6, 16, 16) + i for i in range(6)]  # 3 prompts x 2 samples
    path = tmp_path / "grid.png"
    size = write_contact_sheet(path, videos, ["p0", "p1", "p2"], frames_per_video=2, scale=1,
                               videos_per_row=2)
    gap, label, video_gap = 2, 14, 10
    strip = 2 * (16 + gap)
    assert size == (gap + 2 * strip + video_gap, gap + 3 * (label + 16 + gap))
    image = np.asarray(Image.open(path).convert("RGB"))
    # Row 2 (third prompt), second sample, last frame.
    top, left = gap + 2 * (label + 16 + gap) + label, gap + strip + video_gap + (16 + gap)
    np.testing.assert_array_equal(image[top:top + 16, left:left + 16], videos[5][-1])
    with pytest.raises(ValueError):  # one label per row, not per video
        write_contact_sheet(tmp_path / "x.png", videos, ["a"] * 6, videos_per_row=2)
