"""Evaluation sub-config: how held-out prompts are sampled and scored."""
import ml_collections


def eval_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        samples_per_prompt=4, batch_size=16, seed=0,
        prompts=8,  # data.source=records: captions of the dataset's first clips to sample
        sample_steps=50, guidance_scale=7.5, contact_sheet_frames=4,
        # TAE reconstruction (the `tae` job's eval): held-out clips, and longer clips whose
        # tiled decode is compared with the untiled one (0: skip).
        tae_clips=64, tae_long_frames=64,
        # video_to_audio: held-out clips per held-out combination are samples_per_prompt; clips
        # long_audio_factor x the training length get audio by multi-diffusion (long_audio_clips
        # of them, triangular and uniform windows); media_samples clips are written as .wav and
        # mp4 with sound (48 kHz AAC) into <workdir>/eval/.
        long_audio_factor=3, long_audio_clips=12, media_samples=4))
