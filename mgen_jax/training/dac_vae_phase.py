"""The DAC-VAE phase of Movie Gen Audio: train the audio autoencoder (cfg.dac_vae) on the
soundtracks of the job's audio-visual dataset (data source "shapes_av": records of
data_pipelines/shapes_av_writer.py), through the generic phase runner (checkpoints, resume,
metrics, guards).

Batches are the records' whole soundtracks, {"audio": float32 [B, N]}, N = frames / fps x
data.audio_sample_rate (32000 for the tiny 2 s clips at 16 kHz); the video and labels are
dropped as each record is decoded, so they are neither batched nor sent to the devices. With
cfg.dac_vae.train_window_s > 0 the step trains on one random window of that length per clip
instead (DAC trains on 0.38 s excerpts): cut on the device from the step's key, so the data
pipeline and its checkpointed state are the same either way."""
import jax
import numpy as np

from data_pipelines.shapes_av_writer import decode_av_record
from data_pipelines.soundtrack import soundtrack_length
from mgen_jax.models.builders import build_dac_vae
from mgen_jax.training.dac_vae_step import make_dac_vae_train_step
from mgen_jax.training.phase_runner import JobContext, train_phase


def decode_audio_record(data: bytes) -> dict:
    """One stored audio-visual record -> {"audio": float32 [N]} (nothing else is batched)."""
    return {"audio": np.asarray(decode_av_record(data)["audio"], np.float32)}


def clip_samples(cfg) -> int:
    """Samples in one soundtrack of the experiment's clips."""
    return soundtrack_length(cfg.data.frames, cfg.data.fps, cfg.data.audio_sample_rate)


def window_samples(cfg) -> int:
    """Samples of the training windows: whole clips when dac_vae.train_window_s is 0."""
    total = clip_samples(cfg)
    seconds = float(cfg.dac_vae.get("train_window_s", 0.0))
    if seconds <= 0:
        return total
    n = int(round(seconds * cfg.data.audio_sample_rate))
    if n > total:
        raise ValueError(f"dac_vae.train_window_s={seconds}: {n} samples, longer than the clips' "
                         f"{total} (data.frames / data.fps at data.audio_sample_rate)")
    return n


def random_windows(audio: jax.Array, length: int, key: jax.Array) -> jax.Array:
    """One window of `length` samples per row of audio [B, N], each at its own uniformly drawn
    start -> [B, length]."""
    starts = jax.random.randint(key, (audio.shape[0],), 0, audio.shape[1] - length + 1)
    return jax.vmap(lambda row, s: jax.lax.dynamic_slice_in_dim(row, s, length))(audio, starts)


def windowed(step, length: int, total: int):
    """`step` trained on random windows of `length` samples of each clip (the identity when the
    windows are whole clips). The window and the posterior sample use independent keys."""
    if length == total:
        return step

    def windowed_step(state, batch, key):
        crop_key, step_key = jax.random.split(key)
        return step(state, dict(batch, audio=random_windows(batch["audio"], length, crop_key)),
                    step_key)

    return windowed_step


def train_dac_vae(ctx: JobContext):
    """Train (or resume, or find finished) the DAC-VAE phase; returns its TrainState."""
    cfg = ctx.cfg
    if cfg.data.audio_sample_rate != cfg.dac_vae.sample_rate:
        raise ValueError(f"data.audio_sample_rate={cfg.data.audio_sample_rate} but "
                         f"dac_vae.sample_rate={cfg.dac_vae.sample_rate}: the autoencoder must "
                         "train on audio of its own rate")
    model = build_dac_vae(cfg)
    batch_size = cfg.dac_vae_train.batch_size
    total, length = clip_samples(cfg), window_samples(cfg)
    it = ctx.iterator(ctx.data_dir, batch_size, cfg.data.seed + 3, decode=decode_audio_record)
    example = {"audio": np.zeros((batch_size, total), np.float32)}
    state, _ = train_phase(
        ctx, phase="dac_vae", model=model, train_cfg=cfg.dac_vae_train,
        optimizer_cfg=cfg.dac_vae_optimizer, iterator=it, example_batch=example,
        make_step=lambda optimizer: windowed(
            make_dac_vae_train_step(model, optimizer, cfg.dac_vae), length, total),
        counts={"samples": lambda b: len(b["audio"])},
        meta={"params": model.num_params()})
    return state
