"""Captions of a folder source: an index file at the folder's root (captions.jsonl or
captions.csv, one row per item with `path` relative to the folder, `caption` and an optional
`camera` label) or, for an item the index does not name, a sidecar text file next to it
(`clip.txt` or `clip.mp4.txt` for `clip.mp4`)."""
from __future__ import annotations

import csv
import json
import os

INDEX_NAMES = ("captions.jsonl", "captions.csv")
SIDECAR_SUFFIX = ".txt"


def read_caption_index(root: str) -> dict[str, dict]:
    """{relative path: {"caption": str, "camera": str}} from the root's index files (the jsonl
    wins where both name an item). Rows without a path or with an empty caption are ignored, so
    such an item falls back to its sidecar or has none."""
    index = {}
    for name in reversed(INDEX_NAMES):  # jsonl last, so its rows override the csv's
        path = os.path.join(root, name)
        if os.path.isfile(path):
            for line_number, row in enumerate(_rows(path), start=1):
                if not isinstance(row, dict):
                    raise ValueError(f"{path} row {line_number}: expected an object with "
                                     f"'path' and 'caption', got {row!r}")
                relpath, caption = row.get("path"), _clean(row.get("caption"))
                if relpath and caption:
                    index[os.path.normpath(relpath)] = {
                        "caption": caption, "camera": _clean(row.get("camera")) or ""}
    return index


def sidecar_caption(media_path: str) -> str | None:
    """The caption in `NAME.txt` (stem) or `NAME.EXT.txt` next to a media file, if any."""
    stem = os.path.splitext(media_path)[0]
    for candidate in (stem + SIDECAR_SUFFIX, media_path + SIDECAR_SUFFIX):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8", errors="replace") as f:
                caption = _clean(f.read())
            if caption:
                return caption
    return None


def is_caption_file(relpath: str) -> bool:
    """Index files and sidecars are captions, never items of their own."""
    return relpath in INDEX_NAMES or relpath.endswith(SIDECAR_SUFFIX)


def _rows(path: str):
    with open(path, encoding="utf-8", newline="") as f:
        if path.endswith(".csv"):
            yield from csv.DictReader(f)
            return
        for line_number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path} line {line_number}: not JSON ({err})") from None


def _clean(text) -> str | None:
    return " ".join(str(text).split()) if text is not None and str(text).strip() else None
