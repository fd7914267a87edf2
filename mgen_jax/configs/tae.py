"""Temporal autoencoder sub-configs: an LDM image autoencoder inflated to video (2.5D)."""
import ml_collections

TAE_PRESETS = {
    # Small enough to train on Shapes on a 2-core CPU in a few minutes: a 2x2x2 space/time-to-
    # depth patch in front (as in patch-based video tokenizers) replaces the most expensive,
    # full-resolution level; 2 spatial and 2 temporal downsamplings make up the rest of 8x8x8.
    # One norm group: with 2-channel groups, per-frame statistics of a flat-coloured shape on
    # black normalise each colour channel's contrast to the same pattern and the colour is lost
    # (measured: held-out PSNR 19.9 dB with 8 groups vs 23.5 dB with 1 after 1200 steps).
    "tiny": dict(ch=16, ch_mult=(1, 2, 4), num_res_blocks=1, z_channels=16, attention=True,
                 pixel_patch=(2, 2), temporal_downsamples=2, norm_groups=1),
    # The paper-size spatial backbone (SD-style VAE: ch 128, mult 1,2,4,4, z 16), no patching.
    "paper": dict(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=16, attention=True,
                  pixel_patch=(1, 1), temporal_downsamples=3, norm_groups=32),
}


def tae_config(size: str = "tiny") -> ml_collections.ConfigDict:
    if size not in TAE_PRESETS:
        raise ValueError(f"tae size {size!r} unknown; choose one of {sorted(TAE_PRESETS)}")
    cfg = dict(TAE_PRESETS[size])
    cfg.update(
        # Spatial compression is pixel_patch[1] * 2**(len(ch_mult)-1); temporal compression is
        # pixel_patch[0] * 2**temporal_downsamples, the downsampling happening in the first
        # levels (paper: no patch, 3 levels -> 8x in time, as in Movie Gen).
        kl_weight=1e-6,
        l1_weight=1.0,
        mse_weight=0.0,  # MSE term; tiny models on sparse content need it (see tae_step)
        # Latents are normalised as (z - shift) * scale before the DiT sees them; both are
        # measured on the training data after the TAE is trained (0 / 1 until then).
        latent_shift=0.0,
        latent_scale=1.0,
    )
    return ml_collections.ConfigDict(cfg)


def spatial_compression(tae_cfg) -> int:
    return tae_cfg.pixel_patch[1] * 2 ** (len(tae_cfg.ch_mult) - 1)


def temporal_compression(tae_cfg) -> int:
    return tae_cfg.pixel_patch[0] * 2 ** tae_cfg.temporal_downsamples


def latent_frames(tae_cfg, frames: int) -> int:
    """Latent frames for a clip of `frames` frames; a single frame is an image: one latent frame."""
    return 1 if frames == 1 else frames // temporal_compression(tae_cfg)
