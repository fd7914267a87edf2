"""Latent precompute: process-sharded output equal to one process's, resumable after a kill,
bf16 storage, one normalisation merged from every shard, bucket layout of a built dataset kept,
stale output rebuilt (or refused where removing it would race), and the tiled TAE encoder."""
import json
import shutil

import grain
import ml_collections
import msgpack
import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordWriter

from data_pipelines.clip_records import CLIPS_FORMAT, encode_clip_record
from data_pipelines.latent_manifest import FORMAT_NAME
from data_pipelines.precompute_latents import (StaleLatentsError, decode_latent_record,
                                               finalize_latents_manifest, precompute_latents,
                                               remove_stale_latents)
from data_pipelines.shapes_writer import load_manifest, write_shapes_dataset

FP = {"tae_step": 7, "text": "t"}


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(d, num_clips=24, num_shards=4, frames=8, height=16, width=16, seed=1)
    return d


class FakeEncoder:
    """A TAE stand-in with 4x temporal and spatial compression (no receptive field across
    clips); counts its calls and raises on call number `fail_on` (a kill mid-precompute)."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = 0, fail_on

    def __call__(self, video):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt("killed")
        x = video.astype(np.float32) / 127.5 - 1.0
        b, t, h, w, c = x.shape
        lt = -(-t // 4)
        x = np.pad(x, ((0, 0), (0, lt * 4 - t), (0, 0), (0, 0), (0, 0)), mode="edge")
        x = x.reshape(b, lt, 4, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4, 6))
        mean = np.concatenate([x * 1.3 + 0.2, x.mean(-1, keepdims=True) ** 2], axis=-1)
        return mean, -np.abs(mean)


def text_fields(captions, shard, start, fps):
    """Token-id-like fields: the caption's length, where it came from, and its fps."""
    n = len(captions)
    return {"ids.fake": np.array([[len(c), start + i, 0 if fps is None else round(fps[i])]
                                  for i, c in enumerate(captions)], np.int32)}


def _run(video_dir, out, encoder=None, fingerprint=FP, **kw):
    return precompute_latents(video_dir, out, encode=encoder or FakeEncoder(),
                              text_fields=text_fields, batch_size=4, fingerprint=fingerprint,
                              **kw)


def _records(out_dir, manifest):
    """{shard path: [raw record bytes]} of every shard in the manifest."""
    out = {}
    for shard in manifest["shards"]:
        src = grain.sources.ArrayRecordDataSource([str(out_dir / shard["path"])])
        out[shard["path"]] = [bytes(src[i]) for i in range(len(src))]
    return out


@pytest.fixture(scope="module")
def one_process(shapes_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "latents"
    encoder = FakeEncoder()
    manifest = _run(shapes_dir, out, encoder)
    return out, manifest, encoder.calls


def test_two_processes_equal_one(shapes_dir, one_process, tmp_path):
    ref_out, ref, calls = one_process
    assert calls == 8  # 4 shards of 6 clips in batches of 4: 2 calls each
    assert ref["format"] == FORMAT_NAME and ref["num_records"] == 24
    assert ref["buckets"]["all"]["latent_shape"] == ref["latent_shape"] == [2, 4, 4, 4]
    assert [s["path"] for s in ref["shards"]] == [
        s["path"] for s in load_manifest(shapes_dir)["shards"]]

    out = tmp_path / "latents"
    part0 = _run(shapes_dir, out, process_index=0, process_count=2)
    assert part0["process_index"] == 0 and len(part0["shards"]) == 2
    assert not (out / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        finalize_latents_manifest(out, load_manifest(shapes_dir))
    last = _run(shapes_dir, out, process_index=1, process_count=2)  # the last one merges
    merged = finalize_latents_manifest(out, load_manifest(shapes_dir), write=False)
    assert last == merged == ref  # shift and scale bit-identical
    assert json.loads((out / "manifest.json").read_text()) == ref
    assert _records(out, merged) == _records(ref_out, ref)
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["part-0-of-2.json",
                                                               "part-1-of-2.json"]
    # The normalisation is the one of every stored latent.
    means = np.stack([decode_latent_record(r)["latent_mean"]
                      for rs in _records(out, merged).values() for r in rs])
    assert merged["latent_shift"] == pytest.approx(means.mean(dtype=np.float64), rel=1e-12)
    assert merged["latent_scale"] == pytest.approx(1 / means.std(dtype=np.float64), rel=1e-7)
    np.testing.assert_allclose(merged["latent_channel_mean"], means.mean(axis=(0, 1, 2, 3)),
                               rtol=1e-6)


def test_a_kill_mid_precompute_resumes(shapes_dir, one_process, tmp_path):
    ref_out, ref, _ = one_process
    out = tmp_path / "latents"
    with pytest.raises(KeyboardInterrupt):
        _run(shapes_dir, out, FakeEncoder(fail_on=5))  # dies in the first batch of shard 2
    shards = [s["path"] for s in ref["shards"]]
    assert [(out / p).exists() for p in shards] == [True, True, False, False]
    assert not list(out.glob("*.tmp-*")) and not (out / "manifest.json").exists()
    resumed = FakeEncoder()
    assert _run(shapes_dir, out, resumed) == ref
    assert resumed.calls == 4  # shards 0 and 1 were not encoded again
    assert _records(out, ref) == _records(ref_out, ref)

    # A hard kill between a shard's rename and its done marker, with a half-written temp file
    # of another shard left behind: only that shard is redone; the orphan is cleaned up.
    (out / "manifest.json").unlink()
    (out / f"{shards[3]}.done.json").unlink()
    (out / f"{shards[1]}.tmp-0").write_bytes(b"half a shard")
    again = FakeEncoder()
    assert _run(shapes_dir, out, again) == ref and again.calls == 2
    assert not list(out.glob("*.tmp-*"))
    assert _records(out, ref) == _records(ref_out, ref)


def test_latents_are_stored_as_bfloat16(one_process):
    out, manifest, _ = one_process
    shard = manifest["shards"][0]["path"]
    raw = grain.sources.ArrayRecordDataSource([str(out / shard)])[0]
    arrays = msgpack.unpackb(raw, raw=False)["arrays"]
    assert arrays["latent_mean"]["dtype"] == arrays["latent_logvar"]["dtype"] == "bfloat16"
    rec = decode_latent_record(raw)
    assert rec["latent_mean"].dtype == rec["latent_logvar"].dtype == np.float32  # upcast
    assert rec["latent_mean"].shape == (2, 4, 4, 4) and rec["bucket"] == "all"
    assert rec["ids.fake"][1] == 0 and "fps" not in rec  # a Shapes clip carries no fps
    assert manifest["dtype"] == "bfloat16"


def _write_built_dataset(d):
    """A built-dataset layout by hand: bucket "clip" (8 frames, 16x16) in 2 shards, bucket
    "still" (1-frame images, 16x32) in 1 shard."""
    rng = np.random.default_rng(0)
    specs = {"clip": ("video", 8, 16, 16, [3, 2], 24.0), "still": ("image", 1, 16, 32, [3], 1.0)}
    buckets, shards = {}, []
    for name, (kind, frames, h, w, counts, fps) in specs.items():
        buckets[name] = dict(kind=kind, frames=frames, height=h, width=w,
                             num_records=sum(counts))
        (d / name).mkdir(parents=True)
        for k, n in enumerate(counts):
            path = f"{name}/shard-{k:05d}-of-{len(counts):05d}.array_record"
            writer = ArrayRecordWriter(str(d / path), "group_size:1")
            for i in range(n):
                writer.write(encode_clip_record(
                    video=rng.integers(0, 256, (frames, h, w, 3), dtype=np.uint8),
                    caption=f"{name} {k} {i}", fps=fps + k, native_fps=30.0,
                    source_id=f"src/{name}-{k}-{i}.mp4#0-{frames - 1}", bucket=name))
            writer.close()
            shards.append({"path": path, "bucket": name, "num_records": n})
    manifest = {"format": CLIPS_FORMAT, "buckets": buckets, "shards": shards,
                "num_records": sum(s["num_records"] for s in shards)}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_a_built_dataset_keeps_its_buckets(tmp_path):
    video = _write_built_dataset(tmp_path / "built")
    out = tmp_path / "latents"
    _run(tmp_path / "built", out, process_index=0, process_count=2)
    manifest = _run(tmp_path / "built", out, process_index=1, process_count=2)
    assert manifest["buckets"] == {
        "clip": dict(video["buckets"]["clip"], latent_shape=[2, 4, 4, 4]),
        "still": dict(video["buckets"]["still"], latent_shape=[1, 4, 8, 4])}
    assert manifest["shards"] == video["shards"] and manifest["latent_shape"] == [2, 4, 4, 4]
    for shard in video["shards"]:
        src = grain.sources.ArrayRecordDataSource([str(out / shard["path"])])
        recs = [decode_latent_record(src[i]) for i in range(len(src))]
        assert len(recs) == shard["num_records"]
        k = int(shard["path"].split("shard-")[1][:5])
        for i, rec in enumerate(recs):
            assert rec["bucket"] == shard["bucket"] and rec["caption"].endswith(f" {k} {i}")
            assert rec["fps"] == rec["ids.fake"][2] == (24.0 if shard["bucket"] == "clip"
                                                        else 1.0) + k  # the clip's own fps
            assert rec["source_id"].startswith(f"src/{shard['bucket']}-{k}-{i}.mp4")
            assert rec["latent_mean"].shape == tuple(manifest["buckets"][shard["bucket"]]
                                                     ["latent_shape"])


def test_a_stale_output_is_rebuilt_or_refused(shapes_dir, one_process, tmp_path):
    ref_out, ref, _ = one_process
    out = tmp_path / "latents"
    shutil.copytree(ref_out, out)
    same = FakeEncoder()
    assert _run(shapes_dir, out, same) == ref and same.calls == 0  # up to date: reused

    other = {"tae_step": 8, "text": "t"}  # a retrained TAE
    with pytest.raises(StaleLatentsError, match="process 0"):  # removing would race
        _run(shapes_dir, out, fingerprint=other, process_index=1, process_count=2)
    assert remove_stale_latents(shapes_dir, out, other) and not out.exists()
    assert not remove_stale_latents(shapes_dir, out, other)

    shutil.copytree(ref_out, out)
    rebuilt = FakeEncoder()
    manifest = _run(shapes_dir, out, rebuilt, fingerprint=other)  # one process: rebuilt
    assert rebuilt.calls == 8 and manifest["fingerprint"] == other
    assert json.loads((out / "fingerprint.json").read_text())["fingerprint"] == other

    # An output of the previous format (a manifest, no fingerprint.json) is stale too.
    shutil.rmtree(out)
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": "mgen_latents_v2",
                                                   "fingerprint": FP}))
    assert _run(shapes_dir, out, fingerprint=FP) == ref


def _tiny_tae_cfg(**tiling):
    from mgen_jax.configs.tae import tae_config
    tae = tae_config("tiny")  # 8x8x8 compression
    tae.update(ch=8, ch_mult=(1, 2, 2), norm_groups=4, z_channels=3, pixel_patch=(2, 2),
               temporal_downsamples=2)
    tae.tiling.update(tiling)
    return ml_collections.ConfigDict({"tae": tae})


@pytest.mark.slow  # ~17 s; tests/models/test_tae_tiling.py covers the tiles too
def test_the_tiled_encoder_equals_the_untiled_one_within_a_tile():
    import jax
    from mgen_jax.models.builders import build_tae
    from mgen_jax.models.tae.video_range import video_to_float
    from mgen_jax.training.precompute_phase import latent_encoder

    cfg = _tiny_tae_cfg()
    tae = build_tae(cfg)
    rng = np.random.default_rng(0)
    # Random params drawn by numpy: jax's random init of every shape compiles for ~30 s here.
    params = jax.tree.map(lambda a: (rng.normal(size=a.shape) / np.sqrt(np.prod(a.shape[:-1]))
                                     if a.ndim > 1 else 1 + 0.1 * rng.normal(size=a.shape)
                                     ).astype(np.float32), tae.abstract_params())
    untiled = jax.jit(lambda p, v: tae.bind(p).encode(video_to_float(v)))
    short = rng.integers(0, 256, (2, 8, 16, 16, 3), dtype=np.uint8)  # shorter than a 32-frame tile
    for got, want in zip(latent_encoder(cfg, params)(short), untiled(params, short)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Longer than a tile (8-frame tiles here, to compile small): each tile's latent frame is the
    # untiled encoding of its own 8 frames (no overlap, no context across tiles).
    long = rng.integers(0, 256, (2, 24, 16, 16, 3), dtype=np.uint8)
    mean, logvar = latent_encoder(_tiny_tae_cfg(encode_frames=8), params)(long)
    assert mean.shape == logvar.shape == (2, 3, 2, 2, 3)
    assert np.isfinite(mean).all() and np.std(mean) > 0.01  # (allclose lets NaNs pass)
    for i in range(3):
        want_mean, want_logvar = untiled(params, long[:, 8 * i:8 * i + 8])
        np.testing.assert_allclose(mean[:, i], want_mean[:, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(logvar[:, i], want_logvar[:, 0], rtol=1e-5, atol=1e-5)
