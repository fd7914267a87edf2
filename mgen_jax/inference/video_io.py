"""Video files for generated samples: H.264 mp4 via PyAV and PNG contact sheets.

yuv420p (the pixel format every player understands) needs even frame sizes,
so `write_mp4` pads odd sizes by repeating the last row/column and records the
unpadded size in the file's `comment` tag; `read_mp4` crops it off again.
Tiny videos (e.g. 32x32) are easier to look at, and lose less colour to 4:2:0
chroma subsampling, when upscaled with `scale`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

_SIZE_TAG = re.compile(r"mgen_jax size=(\d+)x(\d+)")
_LABEL_HEIGHT = 14  # pixels above each contact-sheet row for its label
_GAP = 2  # pixels between frames and rows
_VIDEO_GAP = 10  # extra pixels between the videos of one contact-sheet row
_SHEET_BACKGROUND = (24, 24, 24)
_LABEL_COLOUR = (235, 235, 235)


def as_video(frames: np.ndarray) -> np.ndarray:
    """The frames as a uint8 array [T, H, W, 3], or a ValueError saying what they are."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    return frames


def _upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of the two spatial axes of [..., H, W, C]."""
    if scale == 1:
        return frames
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)


def frame_rate(fps) -> Fraction:
    """The exact rate written for `fps` (29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


def add_h264_stream(container: av.container.OutputContainer, frames: np.ndarray, fps,
                    *, scale: int = 1, crf: int = 18
                    ) -> tuple[av.video.stream.VideoStream, np.ndarray]:
    """Add an H.264 (libx264, yuv420p) stream for uint8 frames [T, H, W, 3] to an output
    container opened by PyAV: frames are upscaled by `scale`, padded to even sizes (the
    unpadded size goes into the container's `comment` tag, where `read_mp4` finds it).
    Returns the stream and the frames to encode (see `rgb_frames`)."""
    frames = _upscale(as_video(frames), int(scale))
    height, width = frames.shape[1:3]
    # Pad to even sizes by edge replication so the padding is inconspicuous.
    padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    container.metadata["comment"] = f"mgen_jax size={width}x{height}"
    stream = container.add_stream("libx264", rate=frame_rate(fps))
    stream.width, stream.height = padded.shape[2], padded.shape[1]
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": str(crf)}
    return stream, padded


def rgb_frames(frames: np.ndarray, stream: av.video.stream.VideoStream):
    """uint8 frames [T, H, W, 3] as av.VideoFrames timestamped 0, 1, 2, ... in units of one
    frame of `stream` (explicit timestamps let a muxer interleave them with other streams)."""
    time_base = 1 / stream.average_rate
    for index, frame in enumerate(frames):
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts, video_frame.time_base = index, time_base
        yield video_frame


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 16, *,
              scale: int = 1, crf: int = 18) -> None:
    """Encode uint8 frames [T, H, W, 3] as H.264 (libx264, yuv420p).

    `scale` upscales by an integer factor first; `crf` is x264's quality
    (0 lossless luma, 18 visually near-lossless, 23 x264's default).
    """
    frames = as_video(frames)  # before the file is created
    with av.open(str(path), mode="w") as container:
        stream, padded = add_h264_stream(container, frames, fps, scale=scale, crf=crf)
        for frame in rgb_frames(padded, stream):
            container.mux(stream.encode(frame))
        container.mux(stream.encode())  # flush buffered frames


def read_mp4(path: str | os.PathLike) -> np.ndarray:
    """Decode a video file to uint8 RGB frames [T, H, W, 3].

    Padding added by `write_mp4` is cropped off; upscaling is kept.
    """
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        match = _SIZE_TAG.search(container.metadata.get("comment", ""))
    if not frames:
        raise ValueError(f"{path} has no video frames")
    video = np.stack(frames)
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        video = video[:, :height, :width]
    return video


def write_contact_sheet(path_png: str | os.PathLike, videos: Sequence[np.ndarray],
                        labels: Sequence[str] | None = None, frames_per_video: int = 4,
                        scale: int = 2, videos_per_row: int = 1) -> tuple[int, int]:
    """Save a PNG grid: one row per `videos_per_row` consecutive videos (e.g. the samples of one
    prompt), each as evenly spaced frames left to right, with the row's label above.

    Each row is `_LABEL_HEIGHT` pixels of label then the frames (upscaled by `scale`) separated by
    `_GAP` pixels, videos of a row `_VIDEO_GAP` pixels apart, with a `_GAP` border. `labels`: one
    per row. Returns the image size (width, height).
    """
    if not videos:
        raise ValueError("no videos for the contact sheet")
    if videos_per_row < 1:
        raise ValueError(f"videos_per_row must be >= 1, got {videos_per_row}")
    num_rows = -(-len(videos) // videos_per_row)
    if labels is not None and len(labels) != num_rows:
        raise ValueError(f"{num_rows} rows ({len(videos)} videos, {videos_per_row} per row) but "
                         f"{len(labels)} labels")
    strips = []
    for video in videos:
        video = as_video(video)
        picks = np.linspace(0, video.shape[0] - 1, frames_per_video).round().astype(int)
        strips.append(_upscale(video[picks], int(scale)))
    rows = [strips[i:i + videos_per_row] for i in range(0, len(strips), videos_per_row)]

    def strip_width(strip):
        return strip.shape[0] * (strip.shape[2] + _GAP)

    def row_width(row):
        return sum(strip_width(s) for s in row) + _VIDEO_GAP * (len(row) - 1)

    sheet_width = _GAP + max(row_width(r) for r in rows)
    sheet_height = _GAP + sum(_LABEL_HEIGHT + max(s.shape[1] for s in r) + _GAP for r in rows)

    sheet = Image.new("RGB", (sheet_width, sheet_height), _SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    top = _GAP
    for i, row in enumerate(rows):
        if labels is not None:
            draw.text((_GAP, top), str(labels[i]), fill=_LABEL_COLOUR, font=font)
        top += _LABEL_HEIGHT
        left = _GAP
        for strip in row:
            for frame in strip:
                sheet.paste(Image.fromarray(frame), (left, top))
                left += frame.shape[1] + _GAP
            left += _VIDEO_GAP
        top += max(s.shape[1] for s in row) + _GAP
    sheet.save(str(path_png))
    return sheet.size
