"""Text -> video sampling: encode prompts, Euler-integrate the DiT's guided velocity with the
configured schedule, decode with the TAE in temporal tiles (tae.tiling), return uint8 frames.
One jit per shape."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.configs.registries import SAMPLERS
from mgen_jax.configs.tae import spatial_compression, temporal_compression
from mgen_jax.flow.guidance import guided_velocity
from mgen_jax.flow.schedules import make_schedule
from mgen_jax.models.builders import build_dit, build_tae, build_text_encoders
from mgen_jax.models.tae.latent_scaling import denormalize_latents
from mgen_jax.models.tae.video_range import float_to_video, video_to_float
from mgen_jax.models.text.text_inputs import tokenize_prompts
from mgen_jax.parallel.logical_rules import activation_sharding


class TextToVideo:
    def __init__(self, cfg, *, tae_params, text_params, dit_params, latent_shift: float,
                 latent_scale: float, mesh, rules):
        """mesh, rules: the DiT's activation sharding while sampling (those the params were
        placed with); None, None samples deliberately unsharded."""
        self.cfg = cfg
        self.mesh, self.rules = mesh, rules
        self.tae, self.text_encoders, self.dit = build_tae(cfg), build_text_encoders(cfg), build_dit(cfg)
        self.params = {"tae": tae_params, "text": text_params, "dit": dit_params}
        self.latent_shift, self.latent_scale = latent_shift, latent_scale

    def latent_shape(self, n: int, frames: int, height: int, width: int) -> tuple:
        tc, s = temporal_compression(self.cfg.tae), spatial_compression(self.cfg.tae)
        return (n, -(-frames // tc), height // s, width // s, self.cfg.tae.z_channels)

    @functools.partial(jax.jit, static_argnums=(0, 4, 5, 6, 7))
    def _generate(self, params, tokens, key, latent_shape, frames, ts, guidance_scale):
        """tokens {name: {ids, mask}}. One program: encode the prompts once, then the whole Euler
        loop (one scan; each step one DiT forward over the conditional and unconditional halves
        together), then the tiled TAE decode. The unconditional branch is every encoder's null
        (the empty prompt, as text dropout trained it), encoded once and broadcast."""
        text_encoders = self.text_encoders.bind(params["text"])
        dit = self.dit.bind(params["dit"])

        def encode(text):  # -> the DiT's text context: embeddings and masks, per encoder
            ids = {n: jnp.asarray(v["ids"]) for n, v in text.items()}
            mask = {n: jnp.asarray(v["mask"]) for n, v in text.items()}
            return {"embeddings": text_encoders(ids, mask), "mask": mask}

        batch = latent_shape[0]
        cond = encode(tokens)
        null = encode(tokenize_prompts(self.cfg.text, [""]))
        uncond = jax.tree.map(lambda a: jnp.broadcast_to(a, (batch, *a.shape[1:])), null)

        def model_fn(x, t, context):
            return dit(x, t, context["embeddings"], context["mask"])

        velocity = guided_velocity(model_fn, cond, uncond, guidance_scale)
        x0 = jax.random.normal(key, latent_shape, jnp.float32)
        with activation_sharding(self.mesh, self.rules):  # traces the DiT
            z = SAMPLERS.load(self.cfg.flow.sampler)(velocity, x0, np.asarray(ts))
        z = denormalize_latents(z, self.latent_shift, self.latent_scale)
        return float_to_video(self.tae.bind(params["tae"]).decode_tiled(z, frames))

    @functools.partial(jax.jit, static_argnums=0)
    def _reconstruct(self, tae_params, video_uint8):
        tae = self.tae.bind(tae_params)
        mean, _ = tae.encode_tiled(video_to_float(video_uint8))
        return float_to_video(tae.decode_tiled(mean, video_uint8.shape[1]))

    def reconstruct(self, videos: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """uint8 [N, T, H, W, 3] -> TAE encode (posterior mean) -> decode, uint8, same shape."""
        return np.concatenate([np.asarray(self._reconstruct(self.params["tae"], videos[i:i + batch_size]))
                               for i in range(0, len(videos), batch_size)], axis=0)

    def generate(self, prompts, *, seed: int = 0, steps: int | None = None,
                 guidance_scale: float | None = None, frames: int | None = None,
                 height: int | None = None, width: int | None = None,
                 batch_size: int = 16) -> np.ndarray:
        """prompts: list of str -> uint8 [N, frames, height, width, 3]."""
        data = self.cfg.data
        frames, height, width = frames or data.frames, height or data.height, width or data.width
        if guidance_scale is None:
            guidance_scale = self.cfg.flow.guidance_scale
        guidance_scale = float(guidance_scale)
        steps = steps or self.cfg.flow.sample_steps
        ts = tuple(float(t) for t in make_schedule(self.cfg.flow.schedule, steps,
                                                    self.cfg.flow.lq_reference_steps))
        out = []
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            tokens = tokenize_prompts(self.cfg.text, chunk, fps=self.cfg.data.fps)
            key = jax.random.fold_in(jax.random.key(seed), start)
            shape = self.latent_shape(len(chunk), frames, height, width)
            out.append(np.asarray(self._generate(self.params, tokens, key, shape, frames, ts,
                                                 guidance_scale)))
        return np.concatenate(out, axis=0)
