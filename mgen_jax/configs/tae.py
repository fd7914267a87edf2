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

# Movie Gen's tiles; spatial tiles off.
DEFAULT_TILING = dict(encode_frames=32, decode_latents=4, decode_overlap=2, spatial_tile=0,
                      spatial_overlap=0)


def tae_config(size: str = "tiny") -> ml_collections.ConfigDict:
    if size not in TAE_PRESETS:
        raise ValueError(f"tae size {size!r} unknown; choose one of {sorted(TAE_PRESETS)}")
    cfg = dict(TAE_PRESETS[size])
    cfg.update(
        # Spatial compression is pixel_patch[1] * 2**(len(ch_mult)-1); temporal compression is
        # pixel_patch[0] * 2**temporal_downsamples, the downsampling happening in the first
        # levels (paper: no patch, 3 levels -> 8x in time, as in Movie Gen).
        # Stride-2 spatial levels (None: all but the last level, as in the LDM autoencoder);
        # fewer keep a finer latent grid for small frames (experiments/quickstart.py).
        spatial_downsamples=None,
        kl_weight=1e-6,
        # Initial log-variance of the posterior (bias of the encoder's last 1x1 conv). 0 is the
        # LDM default; a small model learns much faster from a narrow start (see recipes.py).
        posterior_logvar_init=0.0,
        l1_weight=1.0,
        mse_weight=0.0,  # MSE term; tiny models on sparse content need it (see tae_step)
        # Movie Gen's other TAE losses (training/tae_losses.py), all off by default.
        # Outlier penalty on the posterior mean: paper weight 1e5, r = 3.
        opl_weight=0.0,
        opl_r=3.0,
        # The step the OPL switches on (0: from the start); Movie Gen adds it for the last ~10K
        # of its TAE iterations. Logged as opl_weight.
        opl_start=0,
        # LPIPS (VGG, v0.1) on every frame; needs the frozen weights: 'lpips.pth' (an
        # lpips.LPIPS state dict) or 'vgg16.pth,lin.pth' (torchvision VGG16 + lpips' vgg.pth).
        perceptual_weight=0.0,
        lpips_checkpoint="",
        # Patch-GAN (hinge) with taming's adaptive weight, switched on at step disc_start; the
        # trained model becomes AutoencoderWithDiscriminator (models/tae/gan_pair.py).
        disc_weight=0.0,
        disc_start=0,
        disc_ndf=64,
        disc_layers=3,
        # A diffusers AutoencoderKL folder whose weights start the spatial layers (Movie Gen
        # initialises its TAE from an image autoencoder; training/tae_from_diffusers.py). The
        # architecture keys above must match its config.json. "": a random init.
        init_from_diffusers="",
        # Latents are normalised as (z - shift) * scale before the DiT sees them; both are
        # measured on the training data after the TAE is trained (0 / 1 until then).
        latent_shift=0.0,
        latent_scale=1.0,
        # Tiled inference (sampling, reconstruction, `mgen bench tae`): Movie Gen encodes
        # 32-frame tiles without overlap and decodes 4-latent-frame tiles overlapping by 2,
        # blended linearly. Latent frames wider or taller than spatial_tile latent pixels are
        # also cut into tiles overlapping by spatial_overlap latent pixels (0: no spatial tiles).
        tiling=ml_collections.ConfigDict(DEFAULT_TILING),
        # Joint image/video training (Movie Gen: 1 image batch : 3 video batches). An image
        # batch is images_per_clip evenly spaced frames of each clip, as 1-frame videos.
        image_batches=1,
        video_batches=3,
        images_per_clip=8,
    )
    return ml_collections.ConfigDict(cfg)


def spatial_downsamples(tae_cfg) -> int:
    """Stride-2 spatial levels: every level but the last unless tae.spatial_downsamples says
    fewer (the first ones downsample; later levels keep the resolution and add channels)."""
    levels = len(tae_cfg.ch_mult) - 1
    chosen = tae_cfg.get("spatial_downsamples")
    return levels if chosen is None else min(chosen, levels)


def spatial_compression(tae_cfg) -> int:
    return tae_cfg.pixel_patch[1] * 2 ** spatial_downsamples(tae_cfg)


def temporal_compression(tae_cfg) -> int:
    return tae_cfg.pixel_patch[0] * 2 ** tae_cfg.temporal_downsamples


def latent_frames(tae_cfg, frames: int) -> int:
    """Latent frames for a clip of `frames` frames; a single frame is an image: one latent frame."""
    return 1 if frames == 1 else frames // temporal_compression(tae_cfg)
