"""Sources list their items on the driver and read one in a worker: folder listing and caption
lookup, the Shapes source through curation, and the progress counter workers tick."""
import json
import pickle

import numpy as np

from data_pipelines import shapes
from data_pipelines.build.progress import ProgressCounter, items_done, progress_bar
from data_pipelines.build.sources import FolderSource, ShapesSource, open_source
from data_pipelines.curation.curate import curate_media

from . import tiny_config


def test_a_folder_lists_every_file_but_captions_and_hidden_ones(tmp_path):
    for name in ("a.mp4", "sub/b.png", "sub/b.txt", "c.webm", "c.webm.txt", "notes.pdf",
                 ".DS_Store", ".hidden/d.mp4", "captions.jsonl", "captions.csv", "e.gif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "captions.jsonl").write_text(
        json.dumps({"path": "a.mp4", "caption": "  from   jsonl ", "camera": "pan left"}) + "\n"
        + json.dumps({"path": "e.gif", "caption": "jsonl wins"}) + "\n")
    (tmp_path / "captions.csv").write_text("path,caption\ne.gif,csv loses\nnotes.pdf,from csv\n")
    (tmp_path / "sub/b.txt").write_text("stem sidecar\n")
    (tmp_path / "c.webm.txt").write_text("full-name sidecar")
    source = open_source(f"folder:{tmp_path}")
    items = source.items(tiny_config())
    assert [item["id"] for item in items] == ["a.mp4", "c.webm", "e.gif", "notes.pdf", "sub/b.png"]
    cfg = tiny_config()
    captions = {item["id"]: source.caption(item, cfg) for item in items}
    assert captions == {"a.mp4": ("from jsonl", "pan left"), "c.webm": ("full-name sidecar", ""),
                        "e.gif": ("jsonl wins", ""), "notes.pdf": ("from csv", ""),
                        "sub/b.png": ("stem sidecar", "")}
    assert pickle.loads(pickle.dumps(source)).root == source.root


def test_shapes_clips_are_seeded_and_pass_the_tiny_curation():
    cfg = tiny_config("shapes_clips=3")
    source = open_source("shapes")
    assert isinstance(source, ShapesSource) and not isinstance(source, FolderSource)
    items = source.items(cfg)
    assert [item["id"] for item in items] == ["shapes/00000", "shapes/00001", "shapes/00002"]
    media = source.decode(items[1], cfg)
    assert media.kind == "video" and media.fps == 8.0
    assert min(media.frames.shape[1:3]) >= cfg.min_height
    np.testing.assert_array_equal(media.frames, source.decode(items[1], cfg).frames)
    caption, _ = source.caption(items[1], cfg)
    clips, rejected = curate_media(items[1]["id"], media, caption, cfg)
    assert clips and not rejected and clips[0].caption == caption
    assert source.caption(items[1], tiny_config("seed=1"))[0] != caption or \
        not np.array_equal(source.decode(items[1], tiny_config("seed=1")).frames, media.frames)


def test_shapes_stills_follow_the_clips_and_become_images():
    cfg = tiny_config("shapes_clips=2", "shapes_images=2")
    source = open_source("shapes")
    items = source.items(cfg)
    assert [item["id"] for item in items] == [f"shapes/{i:05d}" for i in range(4)]
    for item in items[2:]:
        media = source.decode(item, cfg)
        caption, _ = source.caption(item, cfg)
        assert media.kind == "image" and media.frames.shape[0] == 1
        colour, shape = caption.split()[1], caption.split()[2]
        assert colour in shapes.COLOURS and caption.endswith("on black")
        # The still shows the caption's colour: its brightest pixels are that colour.
        frame = media.frames[0].reshape(-1, 3).astype(int)
        lit = frame[frame.sum(axis=1) > 150]
        assert len(lit) and np.abs(lit.mean(axis=0) - shapes.COLOURS[colour]).max() < 40, shape
        clips, rejected = curate_media(item["id"], media, caption, cfg)
        assert not rejected and clips[0].bucket.startswith("i")


def test_progress_counts_ticks_from_every_pickled_copy(tmp_path):
    counter = ProgressCounter(str(tmp_path))
    copies = [pickle.loads(pickle.dumps(counter)) for _ in range(3)]
    for i, copy in enumerate(copies):
        for _ in range(i + 1):
            copy.tick()
    assert items_done(str(tmp_path)) == 6
    for copy in copies:
        copy.close()
    ProgressCounter(None).tick()  # progress off: a no-op
    with progress_bar(None, 10):
        pass
    with progress_bar(str(tmp_path), 6):
        pass
