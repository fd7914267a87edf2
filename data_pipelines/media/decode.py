"""Decode one source item into uint8 RGB frames at its native frame rate, or say why not.

Videos and GIFs go through PyAV (FFmpeg), images through PIL. Every way a file can be bad ends
as a `MediaError` with a short reason code, so the build can report it and move on: a data
build over millions of scraped files must never stop on one of them.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".gif")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")

# A file that stops early (cut download, crash while writing) is still worth its frames when they
# make at least the shortest clip the tiny and the paper configs keep; below that it is rejected.
MIN_PARTIAL_SECONDS = 1.0
# Decoding fewer frames than this fraction of the stated duration means the file was cut short
# (containers round durations, so not 1.0).
_TRUNCATED_FRACTION = 0.9
# Leading bytes of the containers we read: a file that starts like one of them but will not open
# was cut short ("truncated"); one that starts like none of them is "not_media".
_CONTAINER_MAGIC = (
    (4, b"ftyp"),              # MP4 / MOV (ISO base media)
    (4, b"moov"), (4, b"mdat"), (4, b"wide"), (4, b"free"),  # MOV files without ftyp
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML header)
    (0, b"GIF8"),
)


class MediaError(Exception):
    """Why an item could not be decoded. reason: a short snake_case code (empty_file, not_media,
    truncated, no_video_stream, decode_error, unsupported_extension, not_found, bad_array);
    detail: human text."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class DecodedMedia:
    frames: np.ndarray  # uint8 [T, H, W, 3] at native frame rate (T == 1 for images)
    fps: float          # native fps (0.0 for images)
    kind: str           # "video" | "image"


def decode_media(path: str, *, max_seconds: float | None = None) -> DecodedMedia:
    """Frames of a video, GIF or image file. max_seconds stops decoding a long video early
    (memory). Raises MediaError (never anything else) for a file that cannot be used."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
        raise MediaError("unsupported_extension", f"{path}: extension {extension!r} is not one of "
                         f"{VIDEO_EXTENSIONS + IMAGE_EXTENSIONS}")
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise MediaError("not_found", f"{path}: {error}") from None
    if size == 0:
        raise MediaError("empty_file", f"{path}: zero bytes")
    if extension in IMAGE_EXTENSIONS:
        return _decode_image(path)
    return _decode_video(path, max_seconds)


def decode_array(frames: np.ndarray, fps: float) -> DecodedMedia:
    """Check an in-memory clip (TFDS, Shapes): uint8 [T, H, W, 3] or [H, W, 3] for an image
    (1 or 4 channels are turned into RGB). One frame is an image, fps is then ignored."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise MediaError("bad_array", f"dtype {frames.dtype}, expected uint8")
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise MediaError("bad_array", f"shape {frames.shape}, expected [T, H, W, 3]")
    if min(frames.shape[:3]) == 0:
        raise MediaError("bad_array", f"shape {frames.shape} has an empty axis")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    frames = np.ascontiguousarray(frames[..., :3])
    if frames.shape[0] == 1:
        return DecodedMedia(frames=frames, fps=0.0, kind="image")
    if not (np.isfinite(fps) and fps > 0):
        raise MediaError("bad_array", f"fps {fps} for a {frames.shape[0]}-frame clip")
    return DecodedMedia(frames=frames, fps=float(fps), kind="video")


def _decode_image(path: str) -> DecodedMedia:
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            image.load()
            # Phone photos store their rotation in EXIF; apply it so "portrait" means portrait.
            rgb = ImageOps.exif_transpose(image).convert("RGB")
    except UnidentifiedImageError as error:
        raise MediaError("not_media", f"{path}: {error}") from None
    except OSError as error:
        # PIL reports a cut-short file as "image file is truncated" once the header has parsed.
        reason = "truncated" if "truncated" in str(error) else "decode_error"
        raise MediaError(reason, f"{path}: {error}") from None
    except Exception as error:  # a hostile file can trip anything inside a codec
        raise MediaError("decode_error", f"{path}: {type(error).__name__}: {error}") from None
    return DecodedMedia(frames=np.asarray(rgb, np.uint8)[None], fps=0.0, kind="image")


def _decode_video(path: str, max_seconds: float | None) -> DecodedMedia:
    import av
    try:
        container = av.open(path)
    except Exception as error:
        reason = "truncated" if _looks_like_container(path) else "not_media"
        raise MediaError(reason, f"{path}: {error}") from None
    with container:
        if not container.streams.video:
            kinds = [s.type for s in container.streams]
            raise MediaError("no_video_stream", f"{path}: streams of kinds {kinds}, no video")
        stream = container.streams.video[0]
        # Variable-frame-rate files are read as a constant rate: the stream's average.
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if not (np.isfinite(fps) and fps > 0):
            raise MediaError("decode_error", f"{path}: no frame rate")
        limit = None if max_seconds is None else max(1, int(np.ceil(max_seconds * fps)))
        frames, failure = [], None
        # One converter for the whole stream: frame.to_ndarray(format=...) would set up a new
        # swscale context per frame, 20x slower on small frames.
        to_rgb = av.video.reformatter.VideoReformatter()
        try:
            for frame in container.decode(stream):
                # Keep every frame at the first frame's size (a mid-stream resolution change).
                size = {} if not frames else dict(width=frames[0].shape[1],
                                                  height=frames[0].shape[0])
                frames.append(to_rgb.reformat(frame, format="rgb24", **size).to_ndarray())
                if limit is not None and len(frames) >= limit:
                    break
        except Exception as error:
            failure = f"{type(error).__name__}: {error}"
        stated = _stated_seconds(container, stream)
    decoded_seconds = len(frames) / fps
    wanted = stated if max_seconds is None or stated is None else min(stated, max_seconds)
    cut_short = failure is not None or (wanted is not None and limit != len(frames)
                                        and decoded_seconds < _TRUNCATED_FRACTION * wanted)
    if not frames:
        reason = "truncated" if cut_short else "decode_error"
        raise MediaError(reason, f"{path}: no frames decoded ({failure or 'empty stream'})")
    if cut_short and decoded_seconds < MIN_PARTIAL_SECONDS:
        raise MediaError("truncated", f"{path}: only {decoded_seconds:.2f} s of "
                         f"{wanted or 0:.2f} s decoded ({failure or 'stream ends early'})")
    video = np.stack(frames)
    if path.lower().endswith(".gif") and len(video) == 1:
        return DecodedMedia(frames=video, fps=0.0, kind="image")  # a still GIF is an image
    return DecodedMedia(frames=video, fps=fps, kind="video")


def _stated_seconds(container, stream) -> float | None:
    """The duration the file claims for its video (stream's own when set, else the
    container's), or None when it claims none."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # microseconds (AV_TIME_BASE)
    return None


def _looks_like_container(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:  # a directory, no permission: not something we can read as media
        return False
    return any(head[offset:offset + len(magic)] == magic for offset, magic in _CONTAINER_MAGIC)
