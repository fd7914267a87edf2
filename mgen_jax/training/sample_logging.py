"""Sample videos while the DiT trains: every `sample_every` steps (and at the last step) a few
prompts are sampled from the current parameters (the EMA when the optimizer keeps one) as
`mgen eval` samples (eval.sample_steps, eval.guidance_scale, the experiment's sampler and TAE), written as mp4 under <workdir>/samples/<phase>/<step>/
and as one TensorBoard image per prompt (frames left to right, run `<phase>_samples`)."""
import os

import numpy as np

from data_pipelines.clip_records import encode_mp4_bytes
from mgen_jax.flow.text_to_video_sampler import TextToVideo
from mgen_jax.training.metrics import MetricsWriter


def frame_strip(video: np.ndarray, frames: int = 8) -> np.ndarray:
    """uint8 [T, H, W, 3] -> [H, k*W, 3]: k evenly spaced frames side by side."""
    picks = np.linspace(0, len(video) - 1, min(frames, len(video))).round().astype(int)
    return np.concatenate(list(video[picks]), axis=1)


class SampleHook:
    def __init__(self, cfg, *, prompts: list[str], every: int, num_steps: int, out_dir: str,
                 writer: MetricsWriter, tae_params, text_params, latent_shift: float,
                 latent_scale: float, mesh, rules, seed: int = 0):
        # One pipeline for the whole phase: its sampling program compiles once; each call only
        # swaps in the current DiT parameters.
        self.pipeline = TextToVideo(cfg, tae_params=tae_params, text_params=text_params,
                                    dit_params=None, latent_shift=latent_shift,
                                    latent_scale=latent_scale, mesh=mesh, rules=rules)
        self.prompts, self.every, self.num_steps = list(prompts), every, num_steps
        self.out_dir, self.writer, self.seed, self.fps = out_dir, writer, seed, cfg.data.fps
        self.steps, self.guidance_scale = cfg.eval.sample_steps, cfg.eval.guidance_scale

    def begin(self, start: int, state):
        del start  # a resumed run samples again at its next interval; nothing to undo
        return state

    def after_step(self, done: int, state):
        if done % self.every and done != self.num_steps:
            return state
        self.pipeline.params["dit"] = state.sampling_params()
        videos = self.pipeline.generate(self.prompts, seed=self.seed, steps=self.steps,
                                        guidance_scale=self.guidance_scale)
        if not self.writer.active:  # every process samples (the program is global); one writes
            return state
        folder = os.path.join(self.out_dir, f"{done:07d}")
        os.makedirs(folder, exist_ok=True)
        for i, (prompt, video) in enumerate(zip(self.prompts, videos)):
            with open(os.path.join(folder, f"{i:02d}.mp4"), "wb") as f:
                f.write(encode_mp4_bytes(video, self.fps))
            self.writer.image(f"sample_{i:02d}", frame_strip(video), done, caption=prompt)
        with open(os.path.join(folder, "prompts.txt"), "w") as f:
            f.write("\n".join(self.prompts) + "\n")
        return state

    def close(self) -> None:
        self.writer.close()
