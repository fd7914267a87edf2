"""NaViT-style packing: several latent clips of any shape in one fixed-length token sequence.

Each clip becomes a segment: its tokens (t-major patch order, as `patchify`), their integer
(t, h, w) coordinates for the factorized position tables, and a segment id. Rows are filled
greedily (first fit, in input order) up to `max_tokens` tokens and `max_segments` clips; the rest
of a row is padding with segment id = max_segments, which attends only to itself and is excluded
from the loss. Host-side numpy: runs in the data pipeline, so the model sees fixed shapes and
compiles once however the clip shapes mix.
"""
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PackedClip:
    """Where clip `index` went: row, segment, token span and its token grid."""
    index: int
    row: int
    segment: int
    start: int
    grid: tuple[int, int, int]

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]


def patchify_clip(latent: np.ndarray, patch) -> tuple[np.ndarray, tuple[int, int, int]]:
    """[T, H, W, C] -> ([N, pt*ph*pw*C] tokens in t-major order, token grid)."""
    t, h, w, c = latent.shape
    pt, ph, pw = patch
    if t % pt or h % ph or w % pw:
        raise ValueError(f"latent clip of shape {latent.shape} is not divisible by patch {patch}")
    grid = (t // pt, h // ph, w // pw)
    x = latent.reshape(grid[0], pt, grid[1], ph, grid[2], pw, c).transpose(0, 2, 4, 1, 3, 5, 6)
    return x.reshape(-1, pt * ph * pw * c), grid


def token_coords(grid) -> np.ndarray:
    """[N, 3] integer (t, h, w) coordinates of a token grid, t-major like patchify."""
    return np.stack(np.meshgrid(*(np.arange(g) for g in grid), indexing="ij"), -1).reshape(-1, 3)


def pack_clips(latents, patch, *, max_tokens: int, max_segments: int, rows: int | None = None):
    """latents: list of [T, H, W, C] arrays (same C). Returns (batch, placements) where batch has
    tokens [R, max_tokens, P], coords [R, max_tokens, 3] int32, segments [R, max_tokens] int32, and
    placements is one PackedClip per input clip (for assembling per-clip t / text and unpacking).
    `rows` fixes the number of rows (error if the clips do not fit), else as many as needed."""
    fill, count, placements, pieces = [], [], [], []
    for i, latent in enumerate(latents):
        tokens, grid = patchify_clip(np.asarray(latent), patch)
        n = len(tokens)
        if n > max_tokens:
            raise ValueError(f"clip {i} has {n} tokens, more than max_tokens={max_tokens}")
        row = next((r for r in range(len(fill))
                    if fill[r] + n <= max_tokens and count[r] < max_segments), None)
        if row is None:
            row = len(fill)
            fill.append(0)
            count.append(0)
        placements.append(PackedClip(i, row, count[row], fill[row], grid))
        pieces.append(tokens)
        fill[row] += n
        count[row] += 1
    num_rows = len(fill) if rows is None else rows
    if num_rows < len(fill):
        raise ValueError(f"{len(latents)} clips need {len(fill)} rows of {max_tokens} tokens, "
                         f"only {rows} allowed")
    dim = pieces[0].shape[-1] if pieces else 0
    batch = {"tokens": np.zeros((num_rows, max_tokens, dim), np.float32),
             "coords": np.zeros((num_rows, max_tokens, 3), np.int32),
             "segments": np.full((num_rows, max_tokens), max_segments, np.int32)}
    for p, tokens in zip(placements, pieces):
        span = slice(p.start, p.start + p.num_tokens)
        batch["tokens"][p.row, span] = tokens
        batch["coords"][p.row, span] = token_coords(p.grid)
        batch["segments"][p.row, span] = p.segment
    return batch, placements


def per_segment(values, placements, *, rows: int, max_segments: int, fill=0):
    """Arrange per-clip arrays (e.g. text embeddings [L, D]) as [rows, max_segments, ...]."""
    values = [np.asarray(v) for v in values]
    out = np.full((rows, max_segments) + values[0].shape, fill, values[0].dtype)
    for p, v in zip(placements, values):
        out[p.row, p.segment] = v
    return out


def unpack_clip(tokens: np.ndarray, placement: PackedClip, patch, channels: int) -> np.ndarray:
    """Inverse of patchify_clip for one placed clip: tokens [R, N, P] -> [T, H, W, C]."""
    gt, gh, gw = placement.grid
    pt, ph, pw = patch
    x = np.asarray(tokens)[placement.row, placement.start:placement.start + placement.num_tokens]
    x = x.reshape(gt, gh, gw, pt, ph, pw, channels).transpose(0, 3, 1, 4, 2, 5, 6)
    return x.reshape(gt * pt, gh * ph, gw * pw, channels)
