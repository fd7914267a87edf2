"""TAE reconstruction quality on held-out clips: PSNR and SSIM, videos and images, tiled decoding.

Held-out clips are Shapes clips of the held-out (colour, shape, direction) combinations drawn
with the evaluation seed (never seen in training). Metrics follow Movie Gen's TAE table: video
metrics are averaged over frames; images are 1-frame videos (each clip's first frame). SSIM is
dm_pix's (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03) on [0, 1] frames, averaged over
frames. A longer clip checks tiled decoding: the tiled reconstruction's distance to the untiled
one is reported next to the reconstruction error itself.
"""
import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.shapes import held_out_combos, render_clip
from mgen_jax.models.tae.video_range import video_to_float


def psnr_db(recon: np.ndarray, target: np.ndarray) -> float:
    """PSNR over whole uint8 clips (peak 255), from the mean squared error of all frames."""
    mse = np.mean(np.square(recon.astype(np.float64) - target.astype(np.float64)))
    return float(10.0 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def ssim(recon: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM over all frames of uint8 [N, T, H, W, 3] clips."""
    a = jnp.asarray(recon, jnp.float32).reshape((-1,) + recon.shape[2:]) / 255.0
    b = jnp.asarray(target, jnp.float32).reshape((-1,) + target.shape[2:]) / 255.0
    return float(jnp.mean(jax.jit(dm_pix.ssim)(a, b)))


def held_out_clips(num_clips: int, *, frames: int, height: int, width: int,
                   seed: int) -> np.ndarray:
    combos = held_out_combos()
    rng = np.random.default_rng(seed)
    return np.stack([render_clip(*combos[i % len(combos)], frames=frames, height=height,
                                 width=width, rng=rng) for i in range(num_clips)])


def _to_uint8(video: jax.Array) -> np.ndarray:
    return np.asarray(jnp.round((jnp.clip(video, -1, 1) + 1) * 127.5).astype(jnp.uint8))


def reconstruction_metrics(tae, params, *, num_clips: int, frames: int, height: int, width: int,
                           long_frames: int, seed: int, batch_size: int = 8) -> dict:
    """tae: a PureModel of the TemporalAutoencoder; reconstruction through the posterior mean."""
    @jax.jit
    def reconstruct(params, video):
        model = tae.bind(params)
        return model.decode(model.encode(video_to_float(video))[0], video.shape[1])

    @jax.jit
    def reconstruct_tiled(params, video):
        model = tae.bind(params)
        return model.decode_tiled(model.encode_tiled(video_to_float(video))[0], video.shape[1])

    def run(fn, clips):
        return np.concatenate([_to_uint8(fn(params, clips[i:i + batch_size]))
                               for i in range(0, len(clips), batch_size)])

    clips = held_out_clips(num_clips, frames=frames, height=height, width=width, seed=seed)
    recon = run(reconstruct, clips)
    images = clips[:, :1]
    recon_images = run(reconstruct, images)
    report = {
        "held_out_clips": num_clips, "frames": frames, "height": height, "width": width,
        "video": {"psnr_db": psnr_db(recon, clips), "ssim": ssim(recon, clips)},
        "image": {"psnr_db": psnr_db(recon_images, images), "ssim": ssim(recon_images, images)},
    }
    if long_frames:
        long = held_out_clips(max(num_clips // 8, 1), frames=long_frames, height=height,
                              width=width, seed=seed + 1)
        untiled, tiled = run(reconstruct, long), run(reconstruct_tiled, long)
        rms = lambda a, b: float(np.sqrt(np.mean(np.square(a.astype(np.float64) - b))))  # noqa: E731
        report["long_clip"] = {
            "clips": len(long), "frames": long_frames,
            "untiled_psnr_db": psnr_db(untiled, long), "tiled_psnr_db": psnr_db(tiled, long),
            "reconstruction_rms": rms(untiled, long), "tiled_vs_untiled_rms": rms(tiled, untiled),
        }
    return report
