"""One decoded item -> its curated clips (and the reasons for what was dropped): Movie Gen's
per-item curation stages in order. The Beam build (data_pipelines/build/) runs this per item;
everything here is a pure function of the frames, the caption and the build config
(mgen_jax/configs/data_build.py), so the same item always gives the same clips.

  caption check -> minimum size -> images: one 1-frame clip in the image bucket of nearest aspect
  videos: trim start -> scene cuts -> each scene cut into pieces of min..max seconds
          -> resample to target fps -> motion filter -> bucket (aspect, longest duration covered)
          -> cut to the bucket's frames -> resize + centre crop -> perceptual hashes
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines.curation import buckets, clips, motion, phash, resize, scenes
from data_pipelines.media.decode import DecodedMedia


@dataclasses.dataclass
class CuratedClip:
    source_id: str       # f"{item_id}#{first}-{last}" (native frame indices, inclusive) or item_id
    video: np.ndarray    # uint8 [frames, height, width, 3], cut to the bucket, at its fps
    caption: str
    fps: float           # the bucket's fps (configs/data_build.py; images: target_fps)
    native_fps: float    # the source's (0 for images)
    bucket: str          # bucket name from cfg.buckets
    phash: np.ndarray    # uint64 [cfg.hash_frames] (an image's one hash repeated)
    motion: float        # motion score at target fps (0 for images)
    camera: str = ""     # camera-motion label passed through to the record ("" when unknown)


@dataclasses.dataclass
class Rejection:
    source_id: str
    reason: str          # snake_case: no_caption, too_small, too_short, static, jittery, ...
    detail: str


def curate_media(item_id: str, media: DecodedMedia, caption: str | None, cfg, *,
                 camera: str = "") -> tuple[list[CuratedClip], list[Rejection]]:
    """The clips of one item that pass curation, and a Rejection for each part that does not
    (the whole item, a scene, or a piece of a scene). Never raises for bad media."""
    caption = (caption or "").strip()
    if cfg.require_caption and not caption:
        return [], [Rejection(item_id, "no_caption", "no caption found for this item")]
    frames = media.frames
    if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
            and frames.shape[-1] == 3 and min(frames.shape[:3]) > 0):
        return [], [Rejection(item_id, "bad_array", f"frames {getattr(frames, 'dtype', None)} "
                              f"{getattr(frames, 'shape', None)}, expected uint8 [T, H, W, 3]")]
    height, width = frames.shape[1:3]
    if width < cfg.min_width or height < cfg.min_height:
        return [], [Rejection(item_id, "too_small", f"{width}x{height} (w x h) is under "
                              f"{cfg.min_width}x{cfg.min_height}")]
    if media.kind == "image":
        return _curate_image(item_id, frames[:1], caption, cfg, camera)
    if not media.fps > 0:
        return [], [Rejection(item_id, "decode_error", f"video with fps {media.fps}")]
    return _curate_video(item_id, frames, media.fps, caption, cfg, camera)


def _span_id(item_id: str, first: int, last: int) -> str:
    """Where a clip (or rejected stretch) came from: native frames first..last, inclusive."""
    return f"{item_id}#{first}-{last}"


def _curate_image(item_id, frames, caption, cfg, camera):
    if not cfg.images:
        return [], [Rejection(item_id, "images_disabled", "cfg.images is False")]
    height, width = frames.shape[1:3]
    bucket = buckets.choose_image_bucket(cfg.buckets, height, width)
    if bucket is None:
        return [], [Rejection(item_id, "no_bucket", "the bucket table has no image bucket")]
    video = resize.resize_and_crop(frames, bucket["height"], bucket["width"])
    return [CuratedClip(source_id=item_id, video=video, caption=caption, fps=cfg.target_fps,
                        native_fps=0.0, bucket=bucket["name"],
                        phash=phash.clip_hashes(video, cfg.hash_frames), motion=0.0,
                        camera=camera)], []


def _curate_video(item_id, frames, fps, caption, cfg, camera):
    kept, rejected = [], []
    start = clips.trim_frames(fps, cfg.trim_seconds)
    if start >= len(frames):
        return [], [Rejection(item_id, "too_short", f"{len(frames) / fps:.2f} s, all within the "
                              f"first trim_seconds={cfg.trim_seconds}")]
    cuts = scenes.scene_cuts(frames[start:], cfg.scene_threshold)
    for scene_start, scene_end in scenes.scene_spans(len(frames) - start, cuts):
        pieces, short = clips.cut_scene(start + scene_start, start + scene_end, fps,
                                        cfg.min_seconds, cfg.max_seconds)
        for first, end in short:
            rejected.append(Rejection(_span_id(item_id, first, end - 1), "too_short",
                                      f"{(end - first) / fps:.2f} s < {cfg.min_seconds} s"))
        for first, end in pieces:
            outcome = _curate_piece(item_id, frames, fps, first, end, caption, cfg, camera)
            (kept if isinstance(outcome, CuratedClip) else rejected).append(outcome)
    return kept, rejected


def _curate_piece(item_id, frames, fps, first, end, caption, cfg, camera):
    """Native frames [first, end) of one scene -> a CuratedClip, or the Rejection saying why
    not."""
    height, width = frames.shape[1:3]
    # Motion is scored at target_fps whatever the bucket's rate, so one threshold holds.
    indices = first + clips.resample_indices(end - first, fps, cfg.target_fps)
    score = motion.motion_score(frames[indices])
    if not cfg.min_motion <= score <= cfg.max_motion:
        return Rejection(_span_id(item_id, first, end - 1),
                         "static" if score < cfg.min_motion else "jittery",
                         f"motion {score:.2f} outside [{cfg.min_motion}, {cfg.max_motion}]")
    bucket = buckets.choose_video_bucket(
        cfg.buckets, lambda rate: len(clips.resample_indices(end - first, fps, rate)), height,
        width, target_fps=cfg.target_fps, min_seconds=cfg.min_seconds,
        max_seconds=cfg.max_seconds)
    if bucket is None:
        has_video_bucket = any(b["kind"] == "video" for b in cfg.buckets)
        return Rejection(_span_id(item_id, first, end - 1),
                         "too_short" if has_video_bucket else "no_bucket",
                         f"{(end - first) / fps:.2f} s at {fps:g} fps fit no video bucket")
    # The clip keeps its start; what runs past the bucket's duration is dropped.
    rate, count = buckets.bucket_fps(bucket, cfg.target_fps), bucket["frames"]
    indices = first + clips.resample_indices(end - first, fps, rate)
    video = resize.resize_and_crop(frames[indices[:count]], bucket["height"], bucket["width"])
    return CuratedClip(source_id=_span_id(item_id, int(indices[0]), int(indices[count - 1])),
                       video=video, caption=caption, fps=rate, native_fps=float(fps),
                       bucket=bucket["name"], phash=phash.clip_hashes(video, cfg.hash_frames),
                       motion=score, camera=camera)
