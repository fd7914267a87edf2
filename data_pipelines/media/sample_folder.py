"""A folder of tiny, varied media, generated in code: what `mgen data build --source=folder:`
meets in the wild, good and bad, with the expected outcome of each file. The data-build tests
and `mgen bench data` build from it (no media can be downloaded here).

Good items: mp4 (H.264), webm (VP9, VP8), mov (MPEG-4 part 2) and mkv (H.264) videos of 64-96 px,
1.5-5 s at 8-30 fps in square, landscape and portrait shapes, some with one hard scene cut; an
animated GIF; jpg / png / webp images. Every item shows its own drifting wave pattern with a
bouncing disc, so it has real motion and a perceptual hash unlike every other item's.
Bad items: cut-short files, empty files, text named like media, an audio-only mp4, media under
64 px, a sub-second video, a still video, a noise video, and good media with no caption.
Captions: `captions.jsonl` ({"path", "caption"} per line, path relative to the folder) for most
items, a sidecar `STEM.txt` next to `STEM.EXT` for some, none for the no-caption ones.

Expectations are for experiments/data_tiny.py (64 px minimum side, 1-4 s clips at 8 fps).
"""
from __future__ import annotations

import colorsys
import json
import os

import numpy as np

# The GIF's frame delay is whole centiseconds, so its fps must divide 100.
_GIF_FPS = 10


def make_media_folder(root: str, *, seed: int = 0) -> dict:
    """Write the media under `root` (created if missing) and return what a build should do:
    {"good": {relative path: {"kind", "fps", "seconds", "frames", "height", "width",
                              "scene_cuts": [seconds at which a new scene starts], "caption"}},
     "bad": {relative path: expected rejection reason},
     "duplicates": {relative path: relative path of the good item it re-encodes}}.
    A near-duplicate pair puts one of its two files in the built set, which one is the build's
    choice. Deterministic given seed."""
    rng = np.random.default_rng(seed)
    folder = _Folder(root)
    shapes = [(64, 64), (64, 96), (96, 64), (80, 80), (72, 96), (96, 72), (64, 80), (96, 96)]
    rates = [8, 10, 12, 15, 24, 25, 30]
    containers = [("mp4", "libx264"), ("webm", "libvpx-vp9"), ("mp4", "libx264"),
                  ("webm", "libvpx"), ("mov", "mpeg4"), ("mkv", "libx264")]

    # 30 single-scene videos over every container, shape and rate.
    for i in range(30):
        extension, codec = containers[i % len(containers)]
        height, width = shapes[i % len(shapes)]
        fps = rates[(i * 3) % len(rates)]
        seconds = float(rng.choice([1.5, 2.0, 2.5, 3.0, 4.0, 5.0]))
        frames = moving_scene(rng, int(round(seconds * fps)), height, width, fps)
        path = f"videos/{extension}/clip_{i:02d}.{extension}"
        folder.video(path, frames, fps, codec)
        folder.good(path, rng, fps=fps, frames=frames)

    # 6 videos with one hard cut into a differently coloured scene (each scene >= 1.5 s).
    for i in range(6):
        extension, codec = containers[i % 2]  # mp4 / webm
        height, width = shapes[(i * 3) % len(shapes)]
        fps = rates[(i * 2 + 3) % len(rates)]
        first, second = int(round(rng.choice([1.5, 2.0]) * fps)), int(round(2.0 * fps))
        frames = np.concatenate([moving_scene(rng, first, height, width, fps),
                                 moving_scene(rng, second, height, width, fps, inverted=True)])
        path = f"videos/cuts/cut_{i}.{extension}"
        folder.video(path, frames, fps, codec)
        folder.good(path, rng, fps=fps, frames=frames, scene_cuts=[first / fps])

    # An animated GIF (palette colours only, so the GIF stores exactly what was drawn).
    gif = _gif_frames(rng, 3 * _GIF_FPS, 64, 96)
    folder.gif("videos/bands.gif", gif, _GIF_FPS)
    folder.good("videos/bands.gif", rng, fps=_GIF_FPS, frames=gif)

    # 12 images: jpg, png and webp in all three shapes.
    for i in range(12):
        extension = ("jpg", "png", "webp")[i % 3]
        height, width = shapes[(i * 5) % len(shapes)]
        image = moving_scene(rng, 1, height, width, 1.0)[0]
        path = f"images/still_{i:02d}.{extension}"
        folder.image(path, image)
        folder.good(path, rng, image=image)

    # A re-encoding as webm of an mp4 that makes one clip (<= 4 s, one scene): a near-duplicate.
    original = next(path for path, e in folder.expected["good"].items() if path.endswith(".mp4")
                    and e["seconds"] <= 4 and not e["scene_cuts"])
    copy = "videos/copy_of_" + os.path.basename(original).replace(".mp4", ".webm")
    # Re-encoded from the decoded mp4, as a re-upload would be, but losslessly: at these sizes
    # a lossy pass moves a smooth frame's hash by up to cfg.max_hamming bits, too near the edge.
    folder.video(copy, folder.decode(original), folder.expected["good"][original]["fps"],
                 "libvpx-vp9", lossless=True)
    folder.caption(copy, rng)
    folder.expected["duplicates"][copy] = original

    _bad_media(folder, rng)
    folder.write_captions()
    return folder.expected


def _bad_media(folder: "_Folder", rng: np.random.Generator) -> None:
    """Every way a file can fail, each with a caption (but the no-caption ones) so its reason
    is the one listed."""
    for i in range(2):
        frames = moving_scene(rng, 60, 64, 64, 30)
        whole = folder.video(f"bad/cut_short_{i}.mp4", frames, 30, "libx264")
        # The mp4 muxer writes its index (moov) last: half a file has none and cannot open.
        folder.write_bytes(f"bad/cut_short_{i}.mp4", whole[:len(whole) // 2])
        folder.bad(f"bad/cut_short_{i}.mp4", "truncated", rng)
    folder.image("bad/cut_short_image.jpg", moving_scene(rng, 1, 96, 96, 1.0)[0])
    whole = folder.read_bytes("bad/cut_short_image.jpg")
    folder.write_bytes("bad/cut_short_image.jpg", whole[:len(whole) // 2])
    folder.bad("bad/cut_short_image.jpg", "truncated", rng)
    for path in ("bad/empty_video.mp4", "bad/empty_image.jpg"):
        folder.write_bytes(path, b"")
        folder.bad(path, "empty_file", rng)
    for path in ("bad/notes_video.mp4", "bad/notes_image.png"):
        folder.write_bytes(path, b"these are my notes, not a video\n" * 8)
        folder.bad(path, "not_media", rng)
    folder.audio_only("bad/audio_only.mp4")
    folder.bad("bad/audio_only.mp4", "no_video_stream", rng)
    folder.video("bad/tiny_video.mp4", moving_scene(rng, 24, 48, 64, 12), 12, "libx264")
    folder.bad("bad/tiny_video.mp4", "too_small", rng)
    folder.image("bad/tiny_image.png", moving_scene(rng, 1, 48, 48, 1.0)[0])
    folder.bad("bad/tiny_image.png", "too_small", rng)
    folder.video("bad/blink.mp4", moving_scene(rng, 12, 64, 64, 24), 24, "libx264")
    folder.bad("bad/blink.mp4", "too_short", rng)
    still = np.repeat(moving_scene(rng, 1, 64, 96, 1.0), 30, axis=0)
    folder.video("bad/still.mp4", still, 15, "libx264")
    folder.bad("bad/still.mp4", "static", rng)
    noise = rng.integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)
    folder.video("bad/noise.mp4", noise, 16, "libx264")
    folder.bad("bad/noise.mp4", "jittery", rng)
    for i, (extension, codec) in enumerate((("mp4", "libx264"), ("webm", "libvpx-vp9"))):
        path = f"bad/uncaptioned_{i}.{extension}"
        folder.video(path, moving_scene(rng, 24, 64, 64, 12), 12, codec)
        folder.expected["bad"][path] = "no_caption"
    folder.image("bad/uncaptioned.png", moving_scene(rng, 1, 80, 64, 1.0)[0])
    folder.expected["bad"]["bad/uncaptioned.png"] = "no_caption"


class _Folder:
    """Writes files under root and records their captions and expectations."""

    def __init__(self, root: str):
        self.root = root
        self.expected = {"good": {}, "bad": {}, "duplicates": {}}
        self.captions: dict[str, str] = {}
        os.makedirs(root, exist_ok=True)

    def _path(self, relative: str) -> str:
        path = os.path.join(self.root, *relative.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def write_bytes(self, relative: str, data: bytes) -> None:
        with open(self._path(relative), "wb") as handle:
            handle.write(data)

    def read_bytes(self, relative: str) -> bytes:
        with open(self._path(relative), "rb") as handle:
            return handle.read()

    def video(self, relative: str, frames: np.ndarray, fps: int, codec: str, *,
              lossless: bool = False) -> bytes:
        import av
        path = self._path(relative)
        with av.open(path, mode="w") as container:
            stream = container.add_stream(codec, rate=int(fps))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.codec_context.thread_count = 1  # same bytes every run
            if codec == "libx264":
                stream.options = {"preset": "veryfast"}
            elif codec.startswith("libvpx"):
                quality = {"lossless": "1"} if lossless else {"crf": "20", "b": "0"}
                stream.options = {"deadline": "realtime", "cpu-used": "8", **quality}
            elif codec == "mpeg4":
                stream.bit_rate = 2_000_000
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        return self.read_bytes(relative)

    def decode(self, relative: str) -> np.ndarray:
        import av
        with av.open(self._path(relative)) as container:
            return np.stack([frame.to_ndarray(format="rgb24")
                             for frame in container.decode(video=0)])

    def gif(self, relative: str, indexed: tuple[np.ndarray, np.ndarray], fps: int) -> None:
        from PIL import Image
        indices, palette = indexed
        images = []
        for frame in indices:
            image = Image.fromarray(frame, mode="P")
            image.putpalette(palette.reshape(-1).tolist())
            images.append(image)
        images[0].save(self._path(relative), save_all=True, append_images=images[1:],
                       duration=1000 // fps, loop=0, optimize=False)

    def image(self, relative: str, image: np.ndarray) -> None:
        from PIL import Image
        options = {".jpg": dict(quality=92), ".webp": dict(quality=92)}
        Image.fromarray(image).save(self._path(relative),
                                    **options.get(os.path.splitext(relative)[1], {}))

    def audio_only(self, relative: str) -> None:
        import av
        with av.open(self._path(relative), mode="w") as container:
            stream = container.add_stream("aac", rate=16000)
            tone = np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000).astype(np.float32)
            for start in range(0, len(tone), 1024):
                frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024],
                                                   format="fltp", layout="mono")
                frame.sample_rate = 16000
                container.mux(stream.encode(frame))
            container.mux(stream.encode())

    def caption(self, relative: str, rng: np.random.Generator) -> str:
        subject = rng.choice(["a bouncing disc", "a round blob", "a drifting ball", "a dot"])
        scene = rng.choice(["over soft waves", "on a striped backdrop", "across a gradient"])
        text = f"{subject} {scene}, take {len(self.captions)}"
        self.captions[relative] = text
        return text

    def good(self, relative: str, rng: np.random.Generator, *, fps: float = 0.0,
             frames=None, image: np.ndarray | None = None,
             scene_cuts: list[float] | None = None) -> None:
        if image is not None:
            kind, count, (height, width) = "image", 1, image.shape[:2]
        elif isinstance(frames, tuple):  # a GIF: (palette indices, palette)
            kind, count, (height, width) = "video", len(frames[0]), frames[0].shape[1:3]
        else:
            kind, count, (height, width) = "video", len(frames), frames.shape[1:3]
        self.expected["good"][relative] = dict(
            kind=kind, fps=float(fps), seconds=count / fps if fps else 0.0, frames=count,
            height=int(height), width=int(width), scene_cuts=list(scene_cuts or []),
            caption=self.caption(relative, rng))

    def bad(self, relative: str, reason: str, rng: np.random.Generator) -> None:
        self.caption(relative, rng)
        self.expected["bad"][relative] = reason

    def write_captions(self) -> None:
        """Every third captioned item gets a sidecar STEM.txt, the rest a captions.jsonl line."""
        stems = [os.path.splitext(relative)[0] for relative in self.captions]
        assert len(set(stems)) == len(stems), "two items would share a sidecar caption"
        lines = []
        for i, (relative, text) in enumerate(sorted(self.captions.items())):
            if i % 3 == 2:
                self.write_bytes(os.path.splitext(relative)[0] + ".txt", text.encode() + b"\n")
            else:
                lines.append(json.dumps({"path": relative, "caption": text}))
        self.write_bytes("captions.jsonl", ("\n".join(lines) + "\n").encode())


def moving_scene(rng: np.random.Generator, count: int, height: int, width: int, fps: float, *,
           inverted: bool = False) -> np.ndarray:
    """uint8 [count, height, width, 3]: a two-colour wave pattern drifting across the frame and a
    disc bouncing off the edges, all parameters drawn from rng (so items look unlike each other,
    also to a perceptual hash). inverted: dark hues swapped for light ones, so a cut into it is a
    big content change."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / max(height, width)
    angle = rng.uniform(0, np.pi)
    cycles = rng.uniform(0.8, 2.2)           # wave periods across the frame
    drift = rng.uniform(0.3, 0.45) * rng.choice([-1, 1])  # periods per second
    phase = rng.uniform(0, 2 * np.pi)
    hue = rng.uniform(0, 1)
    low, high = (0.75, 0.95) if inverted else (0.25, 0.45)  # brightness of the two colours
    colour_a = np.array(colorsys.hsv_to_rgb(hue, 0.7, low), np.float32) * 255
    colour_b = np.array(colorsys.hsv_to_rgb((hue + 0.15) % 1, 0.7, high), np.float32) * 255
    disc_colour = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1, 0.9, 1.0 - low), np.float32) * 255
    radius = rng.uniform(0.12, 0.2) * min(height, width)
    position = rng.uniform([radius, radius], [width - radius, height - radius])
    velocity = rng.uniform(0.4, 0.8, 2) * min(height, width) * rng.choice([-1, 1], 2)  # px / s
    along = np.cos(angle) * xx + np.sin(angle) * yy
    seconds = (np.arange(count) / fps).astype(np.float32)[:, None, None]
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (cycles * along - drift * seconds) + phase)
    frames = colour_a + (colour_b - colour_a) * wave[..., None]
    x, y = (_bounce(position[k] + velocity[k] * seconds, radius, (width, height)[k])
            for k in range(2))
    pixel_y, pixel_x = np.mgrid[0:height, 0:width]
    frames[(pixel_x - x) ** 2 + (pixel_y - y) ** 2 <= radius ** 2] = disc_colour
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def _bounce(coordinate, radius: float, extent: int):
    """Position(s) on the segment [radius, extent - radius] after bouncing off its ends."""
    span = extent - 2 * radius
    folded = np.mod(coordinate - radius, 2 * span)
    return radius + np.where(folded <= span, folded, 2 * span - folded)


def _gif_frames(rng: np.random.Generator, count: int, height: int,
                width: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [count, height, width] palette indices, uint8 [5, 3] palette): four vertical
    colour bands scrolling sideways and a disc moving diagonally."""
    palette = (rng.uniform(40, 220, (5, 3))).astype(np.uint8)
    palette[4] = 255 - palette[:4].mean(axis=0).astype(np.uint8)  # the disc stands out
    pixel_y, pixel_x = np.mgrid[0:height, 0:width]
    radius = height / 6
    indices = np.empty((count, height, width), np.uint8)
    for t in range(count):
        indices[t] = ((pixel_x + 3 * t) // (width // 4)) % 4
        x = _bounce(radius + 5 * t, radius, width)
        y = _bounce(radius + 3 * t, radius, height)
        indices[t][(pixel_x - x) ** 2 + (pixel_y - y) ** 2 <= radius ** 2] = 4
    return indices, palette
