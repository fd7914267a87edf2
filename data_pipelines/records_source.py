"""The "records" data source (configs/registries.py:DATA_SOURCES): a dataset that
`mgen data build` wrote. Nothing is written here; the job checks that data.dir holds a complete
build and that the buckets it asks for are in it."""
from data_pipelines.clip_records import load_clips_manifest
from mgen_jax.configs.tae import spatial_compression, temporal_compression


def selected_buckets(data_cfg, manifest: dict) -> list[str]:
    """The bucket names data.buckets asks for ("" = all of the dataset's), checked to exist and
    to hold records."""
    available = {name: b for name, b in manifest["buckets"].items() if b["num_records"] > 0}
    if not data_cfg.buckets:
        return sorted(available)
    names = [n.strip() for n in data_cfg.buckets.split(",") if n.strip()]
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f"data.buckets: {missing} not in the dataset at {data_cfg.dir} "
                         f"(buckets with records: {sorted(available)})")
    return names


def use_built_dataset(data_cfg, out_dir: str) -> dict:
    manifest = load_clips_manifest(out_dir)
    selected_buckets(data_cfg, manifest)
    return manifest


def check_bucket_shapes(cfg, manifest: dict) -> None:
    """Every selected bucket's clip shape must divide into TAE latents and DiT patches."""
    tc, s = temporal_compression(cfg.tae), spatial_compression(cfg.tae)
    pt, ph, pw = cfg.dit.patch_size
    for name in selected_buckets(cfg.data, manifest):
        b = manifest["buckets"][name]
        frames_ok = b["frames"] == 1 or (b["frames"] % (tc * pt) == 0)
        if not (frames_ok and b["height"] % (s * ph) == 0 and b["width"] % (s * pw) == 0):
            raise ValueError(
                f"bucket {name} of {cfg.data.dir} ({b['frames']} x {b['height']} x {b['width']}) "
                f"does not divide into the TAE's {tc}x{s}x{s} compression and the DiT's "
                f"{pt}x{ph}x{pw} patches: leave it out with data.buckets or rebuild with "
                "another bucket table")


def validation_bucket(data_cfg, manifest: dict) -> str:
    """Where a built dataset's held-out clips come from (<phase>_train.validation_clips): the
    selected bucket of the experiment's own shape, data.frames x height x width (the shape it
    samples and evaluates at), so the validation batches stack and compare across stages."""
    shape = (data_cfg.frames, data_cfg.height, data_cfg.width)
    for name in selected_buckets(data_cfg, manifest):
        b = manifest["buckets"][name]
        if (b["frames"], b["height"], b["width"]) == shape:
            return name
    raise ValueError(f"validation_clips: no selected bucket of {data_cfg.dir} has the "
                     f"experiment's shape {shape[0]} x {shape[1]} x {shape[2]} "
                     "(data.frames x height x width), where the held-out clips are taken")
