"""Sampling as one program: the prompts are encoded once per call (not once per Euler step), the
conditional and unconditional branches share each DiT forward."""
import dataclasses

import jax
import numpy as np
import pytest

from experiments.quickstart import get_config
from mgen_jax.flow.text_to_video_sampler import TextToVideo
from mgen_jax.models.builders import build_dit, build_tae, build_text_encoders


def _pipeline():
    cfg = get_config("smoke")
    cfg.data.update(frames=8, height=16, width=16)
    keys = jax.random.split(jax.random.key(0), 3)
    return TextToVideo(cfg, tae_params=build_tae(cfg).init(keys[0]),
                       text_params=build_text_encoders(cfg).init(keys[1]),
                       dit_params=build_dit(cfg).init(keys[2]), latent_shift=0.0,
                       latent_scale=1.0, mesh=None, rules=None)


@dataclasses.dataclass(frozen=True)
class _Counting:
    """A PureModel stand-in whose bound module reports each executed call (a host callback
    inside the compiled program, so a call inside the sampling loop reports once per step)."""
    model: object
    calls: list

    def bind(self, params):
        module = self.model.bind(params)
        calls = self.calls

        def call(ids, mask):
            batch = next(iter(ids.values())).shape[0]
            jax.debug.callback(lambda: calls.append(batch), ordered=False)
            return module(ids, mask)
        return call


@pytest.mark.slow  # compiles the whole sampler
def test_text_is_encoded_once_per_call_and_dit_runs_once_per_step():
    pipeline = _pipeline()
    encoder_calls, dit_batches = [], []
    pipeline.text_encoders = _Counting(pipeline.text_encoders, encoder_calls)
    dit_model = pipeline.dit

    @dataclasses.dataclass(frozen=True)
    class _CountingDit:
        def bind(self, params):
            module = dit_model.bind(params)

            def call(x, t, embeddings, mask):
                jax.debug.callback(lambda: dit_batches.append(x.shape[0]), ordered=False)
                return module(x, t, embeddings, mask)
            return call

    pipeline.dit = _CountingDit()
    steps = 5
    videos = pipeline.generate(["a red circle moving left", "a blue square moving up",
                                "a green triangle moving down"], steps=steps, guidance_scale=3.0)
    assert videos.shape == (3, 8, 16, 16, 3) and videos.dtype == np.uint8
    # Two encoder calls in all (the prompts, and the empty prompt once at batch 1), not 2 x steps.
    assert sorted(encoder_calls) == [1, 3]
    # One DiT forward per Euler step, over conditional and unconditional rows together.
    assert dit_batches == [6] * steps

