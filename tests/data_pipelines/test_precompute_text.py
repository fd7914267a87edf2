"""`mgen data precompute-text`: captions encoded once into bf16 ArrayRecord shards mirroring the
dataset, process-sharded, with the null embeddings; rebuilt when the encoders change; and the
DiT trains from the cache (text.precompute=True) and samples from the trained workdir."""
import json

import numpy as np
import pytest

from data_pipelines.precompute_latents import decode_latent_record
from data_pipelines.precompute_text import (TextCacheReader, load_null_embeddings,
                                            load_text_cache, precompute_text)
from data_pipelines.shapes_writer import decode_record, load_manifest, write_shapes_dataset
from mgen_jax.cli import main
from mgen_jax.configs.loading import load_config
from mgen_jax.checkpointing.text_encoder_checkpoint import load_prompt_encoder
from mgen_jax.configs.text import text_fingerprint

SMOKE = "experiments/quickstart.py:smoke"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(d, num_clips=20, num_shards=3, frames=8, height=16, width=16, seed=3)
    return d


def _captions(data_dir, shard):
    import grain
    src = grain.sources.ArrayRecordDataSource([str(data_dir / shard)])
    return [decode_record(src[i])["caption"] for i in range(len(src))]


@pytest.mark.slow  # two jax.distributed processes
def test_two_processes_write_a_complete_cache_of_bf16_embeddings(dataset, tmp_path):
    cfg = load_config(SMOKE)
    encoder = load_prompt_encoder(cfg)
    cache = tmp_path / "cache"
    kw = dict(encode=encoder.encode, batch_size=4, fingerprint=text_fingerprint(cfg))
    part0 = precompute_text(dataset, cache, process_index=0, process_count=2, **kw)
    with pytest.raises(FileNotFoundError, match="incomplete"):
        load_text_cache(cache)
    precompute_text(dataset, cache, process_index=1, process_count=2, **kw)
    manifest = load_text_cache(cache)
    shards = [s["path"] for s in load_manifest(dataset)["shards"]]
    assert sorted(s["path"] for s in manifest["shards"]) == sorted(shards)
    assert manifest["num_records"] == 20 and manifest["dtype"] == "bfloat16"
    assert manifest["encoders"] == {"byt5": [8, 64], "metaclip": [24, 64], "ul2": [24, 64]}

    reader = TextCacheReader(cache)
    for shard in shards:
        captions = _captions(dataset, shard)
        fields = reader.fields(captions, shard, 0)
        ref = encoder.encode(captions)
        for name, (emb, mask) in ref.items():
            assert fields[f"text.{name}"].dtype.name == "bfloat16"
            np.testing.assert_array_equal(fields[f"text_mask.{name}"], mask)
            np.testing.assert_allclose(fields[f"text.{name}"].astype(np.float32), emb,
                                       rtol=1e-2, atol=1e-2)  # bf16 storage
    null_text, null_mask = load_null_embeddings(cache)
    for name, (emb, mask) in encoder.encode([""]).items():
        np.testing.assert_allclose(null_text[name], emb[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(null_mask[name], mask[0])
    with pytest.raises(ValueError, match="another dataset"):
        reader.fields(["not this caption"], shards[0], 0)

    # Same encoders: nothing rewritten. Other encoders: rebuilt.
    stamp = (cache / "manifest.part-0-of-2.json").stat().st_mtime_ns
    assert precompute_text(dataset, cache, process_index=0, process_count=2, **kw) == part0
    assert (cache / "manifest.part-0-of-2.json").stat().st_mtime_ns == stamp
    other = load_config(SMOKE, ["text.encoders.byt5.max_length=4"])
    precompute_text(dataset, cache, encode=load_prompt_encoder(other).encode, batch_size=4,
                    fingerprint=text_fingerprint(other))
    assert load_text_cache(cache)["encoders"]["byt5"] == [4, 64]
    assert not (cache / "manifest.part-1-of-2.json").exists()


@pytest.mark.slow  # the whole `mgen data precompute-text` command (~22 s)
def test_cli_precompute_text(dataset, tmp_path, capsys):
    main(["data", "precompute-text", f"--config={SMOKE}", f"--data={dataset}",
          f"--out={tmp_path / 'c'}", "--config.text.encoders.ul2.max_length=16"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 20 and summary["encoders"]["ul2"] == [16, 64]
    assert load_text_cache(tmp_path / "c")["num_records"] == 20


@pytest.mark.slow  # a whole DiT phase + sampling
def test_dit_trains_on_cached_embeddings_and_samples(tmp_path):
    from mgen_jax.inference.loading import load_text_to_video
    from mgen_jax.training.text_to_video_job import run_text_to_video
    cfg = load_config(SMOKE, ["text.precompute=True", "data.num_clips=32",
                              "tae_train.batch_size=8"])  # 8 forced CPU devices on the data axis
    workdir = tmp_path / "wd"
    run_text_to_video(cfg, str(workdir), show_progress=False)
    assert load_text_cache(workdir / "text_cache")["num_records"] == 32
    import grain
    shard = load_manifest(workdir / "latents")["shards"][0]["path"]
    rec = decode_latent_record(grain.sources.ArrayRecordDataSource(
        [str(workdir / "latents" / shard)])[0])
    assert rec["text.ul2"].shape == (24, 64) and rec["text.ul2"].dtype.name == "bfloat16"
    assert not any(k.startswith("ids.") for k in rec)  # no encoder runs in the DiT step
    metrics = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any(m["phase"] == "dit" and np.isfinite(m["loss"]) for m in metrics)
    video = load_text_to_video(str(workdir)).generate(["a red circle moving left"], steps=2)
    assert video.shape == (1, 16, 32, 32, 3) and video.dtype == np.uint8


def test_a_built_datasets_captions_are_encoded_with_each_clips_own_fps(tmp_path):
    """Records of a built dataset keep their fps: the text cache's prompts carry it (FPS-24 for
    a 24 fps clip beside FPS-8 for an 8 fps one), not the experiment's data.fps."""
    from array_record.python.array_record_module import ArrayRecordWriter
    from data_pipelines.clip_records import CLIPS_FORMAT, WRITER_OPTIONS, encode_clip_record
    data = tmp_path / "built"
    (data / "v2x8x8").mkdir(parents=True)
    writer = ArrayRecordWriter(str(data / "v2x8x8" / "shard-00000-of-00001.array_record"),
                               WRITER_OPTIONS)
    for caption, fps in (("a slow cat", 8.0), ("a fast dog", 24.0)):
        writer.write(encode_clip_record(video=np.zeros((2, 8, 8, 3), np.uint8), caption=caption,
                                        fps=fps, native_fps=fps, source_id=caption,
                                        bucket="v2x8x8"))
    writer.close()
    (data / "manifest.json").write_text(json.dumps({
        "format": CLIPS_FORMAT, "num_records": 2,
        "buckets": {"v2x8x8": dict(kind="video", frames=2, height=8, width=8, num_records=2)},
        "shards": [{"path": "v2x8x8/shard-00000-of-00001.array_record", "bucket": "v2x8x8",
                    "num_records": 2}]}))
    cfg = load_config(SMOKE)
    encoder = load_prompt_encoder(cfg)
    seen = []

    def encode(captions, fps=None):
        seen.append((list(captions), fps))
        return encoder.encode(captions, fps)

    precompute_text(data, tmp_path / "cache", encode=encode, batch_size=4,
                    fingerprint=text_fingerprint(cfg))
    assert (["a slow cat", "a fast dog"], [8.0, 24.0]) in seen
    cached = TextCacheReader(tmp_path / "cache").fields(
        ["a slow cat", "a fast dog"], "v2x8x8/shard-00000-of-00001.array_record", 0)
    tagged = encoder.encode(["a slow cat", "a fast dog"], [8.0, 24.0])
    for name, (embedding, _) in tagged.items():
        np.testing.assert_allclose(cached[f"text.{name}"].astype(np.float32), embedding,
                                   rtol=1e-2, atol=1e-2)
