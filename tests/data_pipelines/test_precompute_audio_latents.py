"""The audio job's precompute (precompute_latents with input_field="audio" and per-frame video
features): latents of each clip's soundtrack, its features, text fields and normalisation, read
back in record order; a bad feature name is refused."""
import grain
import numpy as np
import pytest

from data_pipelines.precompute_latents import decode_latent_record, precompute_latents
from data_pipelines.shapes_av_writer import decode_av_record, write_shapes_av_dataset
from data_pipelines.shapes_writer import shard_paths

HOP = 400  # 16 kHz -> 40 Hz stand-in latents


def _audio_encoder(audio):
    """A DAC-VAE stand-in: per-hop mean level and peak, 2 channels."""
    b, n = audio.shape
    frames = audio[:, :n // HOP * HOP].reshape(b, n // HOP, HOP)
    mean = np.stack([np.abs(frames).mean(-1), np.abs(frames).max(-1)], axis=-1)
    return mean, np.zeros_like(mean)


def _features(video):
    return {"video_features": video.astype(np.float32).mean(axis=(2, 3))}  # [B, T, 3]


def _text(captions, shard, start, fps):
    return {"ids.fake": np.array([[len(c)] for c in captions], np.int32)}


@pytest.fixture(scope="module")
def av_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes_av")
    write_shapes_av_dataset(d, num_clips=10, num_shards=2, frames=8, height=16, width=16, fps=8,
                            sample_rate=16000, seed=3)
    return d


def test_audio_latents_with_video_features(av_dir, tmp_path):
    manifest = precompute_latents(av_dir, tmp_path / "lat", encode=_audio_encoder,
                                  text_fields=_text, batch_size=4, fingerprint={"dac": 1},
                                  input_field="audio", features=_features)
    assert manifest["latent_shape"] == [8 * 2000 // HOP, 2]
    clips = [decode_av_record(r) for r in grain.sources.ArrayRecordDataSource(shard_paths(av_dir))]
    latents = [decode_latent_record(r)
               for r in grain.sources.ArrayRecordDataSource(shard_paths(tmp_path / "lat"))]
    assert len(latents) == len(clips) == 10
    for clip, rec in zip(clips, latents):
        assert rec["caption"] == clip["caption"]
        want, _ = _audio_encoder(clip["audio"][None])
        np.testing.assert_allclose(rec["latent_mean"], want[0], rtol=1e-2, atol=1e-3)  # bf16
        assert rec["video_features"].dtype == np.float32
        np.testing.assert_allclose(rec["video_features"], _features(clip["video"][None])
                                   ["video_features"][0], rtol=1e-2)
    stored = np.stack([r["latent_mean"] for r in latents])
    assert manifest["latent_shift"] == pytest.approx(stored.mean(), rel=1e-3)


def test_unknown_feature_is_refused(av_dir, tmp_path):
    with pytest.raises(ValueError, match="'pixels' is not one of"):
        precompute_latents(av_dir, tmp_path / "lat", encode=_audio_encoder, text_fields=_text,
                           batch_size=4, fingerprint={}, input_field="audio",
                           features=lambda v: {"pixels": v})
