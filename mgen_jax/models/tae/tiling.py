"""Tiled TAE inference: any clip length (and any frame size) in bounded memory.

Movie Gen encodes 32-frame temporal tiles without overlap and decodes 4-latent-frame tiles with a
2-latent-frame overlap, blended with a linear ramp. Frames larger than a configured size are
also cut into overlapping spatial tiles. All tiles of one call run inside one `lax.scan` (one
compiled body, whatever the length), so memory does not grow with the number of tiles beyond the
input and output arrays themselves.

`encode_fn(video [B, T, H, W, 3]) -> (mean, logvar)` and `decode_fn(z [B, t, h, w, C]) -> video`
are the untiled model calls; everything here only slices, scans and blends.
"""
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _ramp(n: int) -> np.ndarray:
    """Weights rising over n steps, (j + 0.5) / n: a ramp and its mirror sum to exactly 1."""
    return (np.arange(n, dtype=np.float32) + 0.5) / n


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of `tile` covering [0, size), the last one flush with the end."""
    if size <= tile:
        return [0]
    n = math.ceil((size - tile) / stride) + 1
    return [min(i * stride, size - tile) for i in range(n)]


def _axis_weights(starts, tile: int) -> np.ndarray:
    """[num_tiles, tile] blending weights along one axis: ramps where tiles overlap, 1 elsewhere."""
    rows = np.ones((len(starts), tile), np.float32)
    for i, s in enumerate(starts):
        if i > 0:  # fade in over what actually overlaps the previous tile
            o = starts[i - 1] + tile - s
            rows[i, :o] = _ramp(o)
        if i < len(starts) - 1:  # fade out over what the next tile overlaps
            o = s + tile - starts[i + 1]
            rows[i, tile - o:] = _ramp(o)[::-1]
    return rows


def spatially_tiled(fn: Callable, x: jax.Array, *, tile: int, overlap: int, scale: float,
                    out_channels: int, out_frames: int) -> jax.Array:
    """Run fn over overlapping (tile x tile) windows of x [B, T, H, W, C] and blend the outputs.

    fn maps a window [B, T, tile, tile, C] to [B, out_frames, tile*scale, tile*scale,
    out_channels]; scale is the decoder's spatial factor, or its inverse for an encoder (then
    tile and overlap must be multiples of it). Windows overlap by `overlap` input pixels; the
    outputs are weighted by linear ramps in the overlaps, accumulated into a full-size canvas in
    the scan carry, and divided by the summed weights."""
    b, t, h, w, c = x.shape
    th, tw = min(tile, h), min(tile, w)
    starts_h = _tile_starts(h, th, max(th - overlap, 1))
    starts_w = _tile_starts(w, tw, max(tw - overlap, 1))
    unit = round(1 / scale) if scale < 1 else 1
    if any(v % unit for v in (th, tw, *starts_h, *starts_w)):
        raise ValueError(f"spatial tile {tile} / overlap {overlap} must be multiples of the "
                         f"spatial compression {unit} (frame {h}x{w})")
    out_starts_h = [round(v * scale) for v in starts_h]
    out_starts_w = [round(v * scale) for v in starts_w]
    oth, otw = round(th * scale), round(tw * scale)
    wh, ww = _axis_weights(out_starts_h, oth), _axis_weights(out_starts_w, otw)
    total = np.zeros((round(h * scale), round(w * scale)), np.float32)
    for i, oh in enumerate(out_starts_h):
        for j, ow in enumerate(out_starts_w):
            total[oh:oh + oth, ow:ow + otw] += np.outer(wh[i], ww[j])
    grid = [(i, j) for i in range(len(starts_h)) for j in range(len(starts_w))]
    index = jnp.array(grid, jnp.int32)
    in_h, in_w = jnp.array(starts_h), jnp.array(starts_w)
    out_h, out_w = jnp.array(out_starts_h), jnp.array(out_starts_w)
    wh, ww = jnp.asarray(wh), jnp.asarray(ww)

    def step(canvas, ij):
        i, j = ij[0], ij[1]
        window = jax.lax.dynamic_slice(x, (0, 0, in_h[i], in_w[j], 0), (b, t, th, tw, c))
        mask = (wh[i][:, None] * ww[j][None, :])[None, None, :, :, None]
        out = fn(window).astype(jnp.float32) * mask
        origin = (0, 0, out_h[i], out_w[j], 0)
        canvas = jax.lax.dynamic_update_slice(
            canvas, jax.lax.dynamic_slice(canvas, origin, out.shape) + out, origin)
        return canvas, None

    canvas = jnp.zeros((b, out_frames, total.shape[0], total.shape[1], out_channels), jnp.float32)
    canvas, _ = jax.lax.scan(step, canvas, index)
    return canvas / jnp.asarray(total)[None, None, :, :, None]


def _maybe_spatial(fn: Callable, x: jax.Array, *, spatial_tile: int, spatial_overlap: int,
                   scale: float, out_channels: int, out_frames: int) -> jax.Array:
    if spatial_tile <= 0 or (x.shape[2] <= spatial_tile and x.shape[3] <= spatial_tile):
        return fn(x)
    return spatially_tiled(fn, x, tile=spatial_tile, overlap=spatial_overlap, scale=scale,
                           out_channels=out_channels, out_frames=out_frames)


def encode_tiled(encode_fn: Callable, video: jax.Array, *, temporal_compression: int,
                 spatial_compression: int, z_channels: int, tile_frames: int = 32,
                 spatial_tile: int = 0, spatial_overlap: int = 0) -> tuple[jax.Array, jax.Array]:
    """video [B, T, H, W, 3] -> (mean, logvar) [B, ceil(T / c), H / s, W / s, z].

    Temporal tiles of `tile_frames` (a multiple of the temporal compression) without overlap;
    spatial tiles of `spatial_tile` pixels with `spatial_overlap` pixels of overlap when the
    frame is larger than that (0: never). A clip no longer than one tile is encoded directly."""
    if tile_frames % temporal_compression:
        raise ValueError(f"encode tile of {tile_frames} frames is not a multiple of the temporal "
                         f"compression {temporal_compression}")
    b, t, h, w, c = video.shape
    latent_t = max(math.ceil(t / temporal_compression), 1)
    tile_latents = tile_frames // temporal_compression

    def encode_moments(clip):  # both moments as one array, so one canvas blends them
        mean, logvar = encode_fn(clip)
        return jnp.concatenate([mean, logvar], axis=-1)

    def encode_clip(clip, frames_out):
        return _maybe_spatial(encode_moments, clip, spatial_tile=spatial_tile,
                              spatial_overlap=spatial_overlap, scale=1 / spatial_compression,
                              out_channels=2 * z_channels, out_frames=frames_out)

    if t <= tile_frames:
        moments = encode_clip(video, latent_t)
    else:
        n = math.ceil(t / tile_frames)
        padded = video if n * tile_frames == t else jnp.pad(  # a copy only when it must
            video, ((0, 0), (0, n * tile_frames - t), (0, 0), (0, 0), (0, 0)), mode="edge")

        def step(moments, i):
            clip = jax.lax.dynamic_slice_in_dim(padded, i * tile_frames, tile_frames, axis=1)
            return jax.lax.dynamic_update_slice_in_dim(
                moments, encode_clip(clip, tile_latents), i * tile_latents, axis=1), None

        moments = jnp.zeros((b, n * tile_latents, h // spatial_compression,
                             w // spatial_compression, 2 * z_channels), jnp.float32)
        moments, _ = jax.lax.scan(step, moments, jnp.arange(n))
    moments = moments[:, :latent_t]
    return moments[..., :z_channels], moments[..., z_channels:]


def decode_tiled(decode_fn: Callable, z: jax.Array, *, temporal_compression: int,
                 spatial_compression: int, num_frames: int | None = None, tile_latents: int = 4,
                 overlap_latents: int = 2, spatial_tile: int = 0,
                 spatial_overlap: int = 0) -> jax.Array:
    """latents [B, t, h, w, C] -> video [B, num_frames, H, W, 3].

    Temporal tiles of `tile_latents` latent frames advance by tile - overlap; where two tiles
    overlap, the earlier fades out linearly as the later fades in (Movie Gen: 4 latent frames,
    2 overlapping). The scan carries only the overlapping frames of the previous tile. Spatial
    tiles (in latent pixels) apply inside each temporal tile when the latent frame is larger
    than `spatial_tile` (0: never)."""
    if not 0 <= 2 * overlap_latents <= tile_latents:
        raise ValueError(f"decode overlap {overlap_latents} must be at most half the tile "
                         f"({tile_latents} latent frames)")
    b, t, h, w, _ = z.shape
    c, s = temporal_compression, spatial_compression
    num_frames = t * c if num_frames is None else num_frames

    def decode_clip(latents):
        return _maybe_spatial(decode_fn, latents, spatial_tile=spatial_tile,
                              spatial_overlap=spatial_overlap, scale=s, out_channels=3,
                              out_frames=latents.shape[1] * c)

    if t <= tile_latents:
        return decode_clip(z)[:, :num_frames]
    stride = tile_latents - overlap_latents
    n = math.ceil((t - tile_latents) / stride) + 1
    padded = jnp.pad(z, ((0, 0), (0, tile_latents + stride * (n - 1) - t), (0, 0), (0, 0),
                         (0, 0)), mode="edge")
    emit, overlap = stride * c, overlap_latents * c
    fade_out = jnp.asarray(1.0 - _ramp(overlap))[None, :, None, None, None]  # weight of the earlier tile

    def step(carry, i):
        video, previous_tail = carry
        frames = decode_clip(jax.lax.dynamic_slice_in_dim(padded, i * stride, tile_latents,
                                                          axis=1)).astype(jnp.float32)
        head = frames[:, :overlap]
        blended = jnp.where(i > 0, fade_out * previous_tail + (1.0 - fade_out) * head, head)
        out = jnp.concatenate([blended, frames[:, overlap:emit]], axis=1)
        # Written in place into the output canvas: no stacked copy of all tiles.
        video = jax.lax.dynamic_update_slice_in_dim(video, out, i * emit, axis=1)
        return (video, frames[:, frames.shape[1] - overlap:]), None

    video = jnp.zeros((b, n * emit + overlap, h * s, w * s, 3), jnp.float32)
    tail = jnp.zeros((b, overlap, h * s, w * s, 3), jnp.float32)
    (video, tail), _ = jax.lax.scan(step, (video, tail), jnp.arange(n))
    video = jax.lax.dynamic_update_slice_in_dim(video, tail, n * emit, axis=1)
    return video[:, :num_frames]
