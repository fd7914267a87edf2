"""The data-build config behind `mgen data build`: curation thresholds, clip cutting, FPS, the
bucket table and the record store. Defaults are Movie Gen's pre-training numbers
(shared/reference/moviegen_spec.md section 4.2); experiments/data_tiny.py is the small-media
variant the tests and CPU experiments use.

A config file for `mgen data build --config=FILE` defines `get_config(arg=None)` returning this
ConfigDict (changed where needed); `--config.KEY=VALUE` overrides any key, type-checked.
"""
import ml_collections

# Movie Gen buckets 5 aspect ratios x 5 durations (the exact resolutions are in its Table 2,
# which we could not read: these are the common 768 px-class sizes, each side a multiple of 16
# = TAE 8x x DiT 2x2 patch). Heights x widths of the video buckets; images use the same aspects.
PAPER_ASPECTS = ((1024, 576), (896, 672), (768, 768), (672, 896), (576, 1024))
# 4-16 s, as in the paper; frames = seconds x target fps (a multiple of the TAE's 8x in time).
PAPER_DURATIONS = (4.0, 6.0, 8.0, 12.0, 16.0)


def bucket_table(aspects, durations, fps: float) -> list[dict]:
    """Video buckets (every aspect x every duration) then one image bucket per aspect. A bucket
    is {"name", "kind": "video" | "image", "frames", "height", "width", "seconds"}."""
    table = []
    for seconds in durations:
        for h, w in aspects:
            frames = int(round(seconds * fps))
            table.append(dict(name=f"v{frames}x{h}x{w}", kind="video", frames=frames,
                              height=h, width=w, seconds=float(seconds)))
    for h, w in aspects:
        table.append(dict(name=f"i{h}x{w}", kind="image", frames=1, height=h, width=w,
                          seconds=0.0))
    return table


def data_build_config() -> ml_collections.ConfigDict:
    target_fps = 16.0  # pre-training: clips sampled at >= 16 fps (spec 2.3)
    return ml_collections.ConfigDict(dict(
        # Frames per second every stored clip is resampled to (native fps kept in the record).
        target_fps=target_fps,
        # Single-shot clips cut from each scene: a scene shorter than min_seconds is rejected,
        # a longer one yields consecutive clips of at most max_seconds.
        min_seconds=4.0,
        max_seconds=16.0,
        trim_seconds=2.0,  # dropped from the start of every source video (paper: "first few s")
        # A source is decoded up to this many seconds (0: whole): bounds a worker's memory on
        # hour-long files (the paper's sources run 4 s to 2 min).
        max_source_seconds=150.0,
        min_width=720,
        min_height=720,
        # Scene cuts: a frame whose content change (mean absolute difference of 32x32 HSV
        # thumbnails, in [0, 255]) exceeds this starts a new scene (the role of FFmpeg's scene
        # score / PySceneDetect's content detector).
        scene_threshold=30.0,
        # Motion score: mean absolute luma change between consecutive frames at target_fps, in
        # [0, 255]. Below min: static (slideshow, still); above max: jitter / flashing.
        min_motion=0.5,
        max_motion=40.0,
        # Near-duplicates: 64-bit perceptual hashes (DCT) of `hash_frames` evenly spaced frames;
        # two clips whose hashes all lie within max_hamming bits are duplicates (one is kept).
        dedup=True,
        hash_frames=3,
        max_hamming=6,
        # Cluster-balanced resampling (prob. proportional to 1/sqrt(cluster size)) over the hash
        # features; off by default (needs many clips to be meaningful).
        balance=False,
        balance_clusters=16,
        # Bucket table: every clip is resized + centre-cropped to the bucket of its aspect ratio
        # and the longest duration it covers (shorter clips are rejected "too_short").
        buckets=bucket_table(PAPER_ASPECTS, PAPER_DURATIONS, target_fps),
        # Images (and GIF-less stills) become 1-frame clips in the image buckets.
        images=True,
        # "frames": uint8 frames in the record; "encoded": the clip re-encoded (mp4, lossless-ish
        # crf) and decoded by the loader.
        store="frames",
        records_per_shard=256,
        # Captions: captions.jsonl / captions.csv in the folder (fields path, caption) or a
        # sidecar NAME.txt; an item without one is rejected "no_caption".
        require_caption=True,
        # TFDS sources: which feature holds the video (or image) and which the text ("" = the
        # first rank-4 uint8 / image feature, the first text feature).
        tfds_video_feature="",
        tfds_text_feature="",
        tfds_fps=16.0,  # TFDS clips carry no fps of their own unless the dataset has one
        # Shapes source: how many clips (the synthetic set of data_pipelines/shapes.py), and
        # how many stills after them (images captioned by colour and shape, for joint stages).
        shapes_clips=256,
        shapes_images=0,
        seed=0,
    ))


# Small media (tests, CPU experiments): square, landscape, portrait at 32-48 px (multiples of the
# tiny TAE's 8x), 1, 2 and 4 s at 8 fps.
TINY_ASPECTS = ((32, 32), (32, 48), (48, 32))
TINY_DURATIONS = (1.0, 2.0, 4.0)


def tiny_data_build_config() -> ml_collections.ConfigDict:
    """experiments/data_tiny.py: sources of at least 64 px a side, single-shot clips of 1-4 s at
    8 fps, nothing trimmed, sources read up to 30 s, the tiny bucket table."""
    cfg = data_build_config()
    cfg.update(target_fps=8.0, min_seconds=1.0, max_seconds=4.0, trim_seconds=0.0,
               max_source_seconds=30.0, min_width=64, min_height=64, records_per_shard=16,
               shapes_clips=64)
    cfg.buckets = bucket_table(TINY_ASPECTS, TINY_DURATIONS, cfg.target_fps)
    return cfg


# Movie Gen's fine-tuning set (spec 4.1 / 4.3): curated clips of 10.6-16 s, half exactly 16 s,
# trained as 16 s at 16 fps or 10.6 s at 24 fps: 256 frames either way (32 latent frames, the
# 768 px stage's 73,728 tokens). A 16 s clip takes the 16 fps bucket (the longest duration it
# covers); a 10.7-16 s one the 24 fps bucket, its first 10.67 s; shorter clips are rejected.
SFT_RATES = ((16.0, 16.0), (256 / 24, 24.0))  # (seconds, fps) of the two 256-frame buckets


def sft_bucket_table(aspects=PAPER_ASPECTS) -> list[dict]:
    """Video buckets of 256 frames at 16 and 24 fps per aspect ratio, each with its own `fps`."""
    return [dict(name=f"v256x{h}x{w}_{fps:g}fps", kind="video", frames=int(round(seconds * fps)),
                 height=h, width=w, seconds=float(seconds), fps=fps)
            for seconds, fps in SFT_RATES for h, w in aspects]


def sft_data_build_config() -> ml_collections.ConfigDict:
    """`mgen data build --config=experiments/data_sft.py`: the curated fine-tuning videos
    (10.6-16 s, no images) into the 16 and 24 fps buckets; the manual selection and caption
    correction of the paper happen before (the folder holds the chosen clips)."""
    cfg = data_build_config()
    cfg.update(min_seconds=SFT_RATES[1][0] - 0.05, max_seconds=16.0, images=False)
    cfg.buckets = sft_bucket_table()
    return cfg
