"""The DAC-VAE phase on a small audio-visual Shapes dataset: the loss falls, a run stopped at a
checkpoint resumes to exactly the state of an uninterrupted run, and a clip rate the autoencoder
was not made for is refused naming both keys. A shrunk DAC-VAE (strides 2 and 4, odd widths) at 4 kHz
on 0.5 s clips keeps the compiles short."""
import json

import jax
import numpy as np
import pytest

from data_pipelines.grain_pipeline import holdout_batches
from data_pipelines.shapes_av_writer import write_shapes_av_dataset
from mgen_jax.configs.schema import default_experiment
from mgen_jax.training.dac_vae_phase import (decode_audio_record, random_windows,
                                             train_dac_vae, window_samples)
from mgen_jax.training.phase_runner import JobContext

DATA = dict(frames=8, height=16, width=17, fps=16, sample_rate=4000)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes_av")
    write_shapes_av_dataset(out, num_clips=24, num_shards=2, seed=3, **DATA)
    return str(out)


def _cfg(data_dir, steps, **dac):
    cfg = default_experiment()
    cfg.data.update(source="shapes_av", dir=data_dir, frames=DATA["frames"],
                    height=DATA["height"], width=DATA["width"], fps=DATA["fps"],
                    audio_sample_rate=DATA["sample_rate"])
    cfg.dac_vae.update(sample_rate=DATA["sample_rate"], encoder_dim=2, encoder_rates=(2, 4),
                       feature_dim=7, latent_channels=3, decoder_dim=12, decoder_rates=(4, 2),
                       stft_weight=1.0, train_window_s=0.3, **dac)
    cfg.dac_vae.mel_loss.update(window_lengths=(32, 64, 128), n_mels=(5, 10, 20))
    cfg.dac_vae.stft_loss.update(window_lengths=(128, 32))
    cfg.dac_vae_train.update(steps=steps, batch_size=8, log_every=1, checkpoint_every=6,
                             async_checkpoints=False)
    # Constant lr: a run stopped early follows the same schedule as the whole one.
    cfg.dac_vae_optimizer.update(lr=3e-3, warmup_steps=0, schedule="constant")
    return cfg


def _losses(workdir):
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [(m["step"], m["loss"], m) for m in lines if m.get("phase") == "dac_vae"]


def test_records_decode_to_audio_only_and_windows_are_slices(data_dir):
    batch = holdout_batches(data_dir, holdout=4, batch_size=4, decode=decode_audio_record)[0]
    assert set(batch) == {"audio"}
    assert batch["audio"].shape == (4, 2000) and batch["audio"].dtype == np.float32
    cfg = _cfg(data_dir, 1)
    assert window_samples(cfg) == 1200
    audio = np.arange(4 * 2000, dtype=np.float32).reshape(4, 2000)
    windows = np.asarray(random_windows(audio, 1200, jax.random.key(5)))
    starts = windows[:, 0] - audio[:, 0]
    np.testing.assert_array_equal(windows, audio[np.arange(4)[:, None],
                                                 starts[:, None].astype(int) + np.arange(1200)])
    cfg.dac_vae.train_window_s = 0.6
    with pytest.raises(ValueError, match="train_window_s=0.6"):
        window_samples(cfg)


@pytest.mark.slow  # three compiles of the train step: 80-240 s on 2 shared cores
def test_loss_falls_and_a_resumed_run_matches_an_uninterrupted_one(data_dir, tmp_path):
    whole = train_dac_vae(JobContext(_cfg(data_dir, 24), str(tmp_path / "whole"),
                                     show_progress=False))
    losses = [loss for _, loss, _ in _losses(tmp_path / "whole")]
    assert len(losses) == 24 and np.all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < 0.93 * np.mean(losses[:6]), losses
    terms = _losses(tmp_path / "whole")[-1][2]
    assert {"mel", "stft", "waveform_l1", "kl", "snr_db", "grad_norm"} <= set(terms)

    # Stopped after the checkpoint of step 12, then resumed to 24 (the iterator's position and
    # the step keys come back with it).
    part = tmp_path / "part"
    train_dac_vae(JobContext(_cfg(data_dir, 12), str(part), show_progress=False))
    resumed = train_dac_vae(JobContext(_cfg(data_dir, 24), str(part), show_progress=False))
    assert int(resumed.step) == 24
    for a, b in zip(jax.tree.leaves(jax.device_get(whole.params)),
                    jax.tree.leaves(jax.device_get(resumed.params))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # A finished phase returns at once, from its checkpoint.
    again = train_dac_vae(JobContext(_cfg(data_dir, 24), str(part), show_progress=False))
    assert int(again.step) == 24


def test_audio_at_another_rate_than_the_autoencoders_is_refused(data_dir, tmp_path):
    cfg = _cfg(data_dir, 1)
    cfg.dac_vae.sample_rate = 8000
    with pytest.raises(ValueError, match=r"data.audio_sample_rate=4000 but dac_vae.sample_rate"):
        train_dac_vae(JobContext(cfg, str(tmp_path), show_progress=False))
