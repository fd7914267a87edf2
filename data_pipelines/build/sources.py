"""Where a build's items come from (`mgen data build --source=SRC`):

  folder:PATH                every file under PATH (captions from captions.jsonl / .csv or a
                             sidecar NAME.txt); item id = the path relative to PATH
  tfds:NAME[/CONFIG][:SPLIT] a prepared TFDS dataset (in --tfds_data_dir), read by index through
                             TFDS's own reader; item id = NAME/SPLIT/INDEX
  shapes                     cfg.shapes_clips synthetic Shapes clips (and cfg.shapes_images
                             stills) rendered in code

A source lists its items on the driver (small plain dicts, cheap to ship) and reads one item
inside a Beam worker, so the heavy decoding runs wherever the runner puts it. Sources are
plain picklable objects: Beam's multi-process and remote runners ship them to their workers.
"""
from __future__ import annotations

import math
import os

import numpy as np

from data_pipelines import shapes
from data_pipelines.build.captions import is_caption_file, read_caption_index, sidecar_caption
from data_pipelines.media.decode import DecodedMedia, decode_array, decode_media
from mgen_jax.configs.registries import BUILD_SOURCES

# The Shapes source renders at this frame rate (its native fps; curation resamples to target).
SHAPES_FPS = 8.0


class FolderSource:
    kind = "folder"

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def describe(self) -> str:
        return f"folder:{self.root}"

    def items(self, cfg) -> list[dict]:
        """Every file under the root except captions and hidden files, sorted. Files of any
        extension are listed: decoding, not the name, decides what is media, so a stray
        document is reported as rejected rather than silently left out."""
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"folder:{self.root}: no such directory")
        index = read_caption_index(self.root)
        items = []
        for folder, subfolders, files in os.walk(self.root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(files):
                path = os.path.join(folder, name)
                relpath = os.path.relpath(path, self.root)
                if name.startswith(".") or is_caption_file(relpath):
                    continue
                entry = index.get(os.path.normpath(relpath), {})
                items.append({"id": relpath.replace(os.sep, "/"), "size": os.path.getsize(path),
                              "caption": entry.get("caption"), "camera": entry.get("camera", "")})
        return items

    def caption(self, item, cfg) -> tuple[str | None, str]:
        if item["caption"] is not None:
            return item["caption"], item["camera"]
        return sidecar_caption(os.path.join(self.root, item["id"])), item["camera"]

    def decode(self, item, cfg) -> DecodedMedia:
        return decode_media(os.path.join(self.root, item["id"]),
                            max_seconds=cfg.max_source_seconds or None)


class TfdsSource:
    """A TFDS dataset prepared as array_record, read without TensorFlow: features are found
    in the stored examples (a uint8 [T, H, W, 3] array is a video, [H, W, 3] an image, bytes
    or str the text) unless cfg.tfds_video_feature / cfg.tfds_text_feature name them."""
    kind = "tfds"

    def __init__(self, name: str, config: str | None, split: str, data_dir: str | None):
        self.name, self.config, self.split, self.data_dir = name, config, split, data_dir
        self.video_feature = self.text_feature = None  # resolved on the driver by items()
        self._data = None  # the opened reader, per process (not pickled)

    def describe(self) -> str:
        config = f"/{self.config}" if self.config else ""
        return f"tfds:{self.name}{config}:{self.split}"

    def __getstate__(self):
        return {**self.__dict__, "_data": None}

    def _reader(self):
        if self._data is None:
            import tensorflow_datasets as tfds
            try:
                builder = tfds.builder(self.name, config=self.config, data_dir=self.data_dir)
            except tfds.core.registered.DatasetNotFoundError:
                raise FileNotFoundError(
                    f"{self.describe()}: no such prepared dataset in --tfds_data_dir="
                    f"{self.data_dir}") from None
            if self.split not in builder.info.splits:
                raise ValueError(f"{self.describe()}: no split {self.split!r} (has "
                                 f"{sorted(builder.info.splits)})")
            self._data = builder.as_data_source(self.split)
        return self._data

    def items(self, cfg) -> list[dict]:
        data = self._reader()
        if len(data):
            self.video_feature, self.text_feature = _tfds_features(data[0], cfg, self.describe())
        return [{"id": f"{self.name}/{self.split}/{i}", "index": i} for i in range(len(data))]

    def caption(self, item, cfg) -> tuple[str | None, str]:
        if not self.text_feature:
            return None, ""
        text = self._reader()[item["index"]][self.text_feature]
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return (" ".join(text.split()) or None), ""

    def decode(self, item, cfg) -> DecodedMedia:
        return decode_array(self._reader()[item["index"]][self.video_feature], cfg.tfds_fps)


def _tfds_features(example: dict, cfg, what: str) -> tuple[str, str | None]:
    """(video feature, text feature or None) of a TFDS example, as cfg names them or found."""
    def is_media(value):
        return (isinstance(value, np.ndarray) and value.dtype == np.uint8
                and value.ndim in (3, 4) and value.shape[-1] == 3)

    def is_text(value):
        return isinstance(value, (bytes, str))

    chosen = []
    for key, test, kind in (("tfds_video_feature", is_media, "uint8 video/image array"),
                            ("tfds_text_feature", is_text, "text")):
        name = cfg[key]
        if name:
            if name not in example:
                raise ValueError(f"{key}={name!r}: {what} has no such feature (has "
                                 f"{sorted(example)})")
        else:
            # Videos (rank 4) before images (rank 3) when a dataset holds both.
            found = sorted((k for k in example if test(example[k])),
                           key=lambda k: (-getattr(example[k], "ndim", 0), k))
            name = found[0] if found else None
            if name is None and kind != "text":
                raise ValueError(f"{what}: no {kind} feature among {sorted(example)}; name one "
                                 "with tfds_video_feature")
        chosen.append(name)
    return chosen[0], chosen[1]


class ShapesSource:
    """Synthetic Shapes clips (data_pipelines/shapes.py) through the same curation: clip i is
    drawn from its own generator seeded by (cfg.seed, i), at one of the build's video aspect
    ratios, just large enough to pass the size filter, max_seconds (+ trim) long at 8 fps.
    Items cfg.shapes_clips.. are stills (one frame of such a clip, at an image bucket's aspect,
    captioned by colour and shape: a still shows no direction), the images of joint stages."""
    kind = "shapes"

    def describe(self) -> str:
        return "shapes"

    def items(self, cfg) -> list[dict]:
        return [{"id": f"shapes/{i:05d}", "index": i}
                for i in range(cfg.shapes_clips + cfg.shapes_images)]

    def caption(self, item, cfg) -> tuple[str | None, str]:
        return _shapes_clip(item["index"], cfg, render=False)[0], ""

    def decode(self, item, cfg) -> DecodedMedia:
        return decode_array(_shapes_clip(item["index"], cfg, render=True)[1], SHAPES_FPS)


def _shapes_clip(index: int, cfg, *, render: bool) -> tuple[str, np.ndarray | None]:
    """(caption, video if render else None) of Shapes item `index` (a clip, or a still from
    index cfg.shapes_clips on)."""
    rng = np.random.default_rng([cfg.seed, index])
    combos = shapes.train_combos()
    colour, shape, direction = combos[rng.integers(len(combos))]
    still = index >= cfg.shapes_clips
    text = shapes.caption(colour, shape, direction, rng)
    if still:
        words = shapes.SHAPE_SYNONYMS[shape]
        text = f"a {colour} {words[rng.integers(len(words))]} on black"
    if not render:
        return text, None
    kind = "image" if still else "video"
    aspects = sorted({(b["height"], b["width"]) for b in cfg.buckets if b["kind"] == kind})
    height, width = aspects[rng.integers(len(aspects))] if aspects else (1, 1)
    scale = max(cfg.min_height / height, cfg.min_width / width, 1.0, 16 / min(height, width))
    frames = 2 if still else max(2, round((cfg.trim_seconds + cfg.max_seconds) * SHAPES_FPS))
    video = shapes.render_clip(colour, shape, direction, frames=frames,
                               height=math.ceil(height * scale), width=math.ceil(width * scale),
                               rng=rng)
    return text, video[:1] if still else video


def folder_source(rest: str, tfds_data_dir):
    return FolderSource(rest) if rest else None


def tfds_source(rest: str, tfds_data_dir):
    if not rest:
        return None
    name_and_config, _, split = rest.partition(":")
    name, _, config = name_and_config.partition("/")
    return TfdsSource(name, config or None, split or "train", tfds_data_dir)


def shapes_source(rest: str, tfds_data_dir):
    return None if rest else ShapesSource()


def open_source(spec: str, *, tfds_data_dir: str | None = None):
    """The source named by an SRC string "<kind>[:<rest>]" (kinds: configs/registries.py
    BUILD_SOURCES); a ValueError listing the kinds for anything else."""
    kind, _, rest = spec.partition(":")
    source = BUILD_SOURCES.load(kind)(rest, tfds_data_dir) if kind in BUILD_SOURCES else None
    if source is None:
        raise ValueError(f"--source={spec!r}: expected one of "
                         + "; ".join(BUILD_SOURCES.entry(k).help for k in BUILD_SOURCES.names()))
    return source
