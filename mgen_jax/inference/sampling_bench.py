"""`mgen bench sample`: seconds per video and per denoising step of text-to-video sampling.

The pipeline is the real one (flow/text_to_video_sampler.py: prompts encoded once, every Euler step
one DiT forward over the conditional and unconditional halves, the whole loop and the tiled TAE
decode in one compiled program), on random weights, for two models:

  * `quickstart`: the model of experiments/quickstart.py at its own sampling settings;
  * `mid`: the mid-size DiT of `mgen bench dit` (width 1024, 4 layers) with the quickstart's
    TAE and 1x1x1 patches at 256 px x 32 frames: 4x32x32 = 4,096 tokens per video.

For each: the compile time of the first call, the steady-state seconds per call (median), and,
timed apart in the same process, the TAE decode and the text encoding of the same batch, so that
seconds per denoising step = (call - decode - encode) / steps, and the decode's share of a call.

    mgen bench sample [--json=F] [--quick]
"""
import os
import time

import jax
import jax.numpy as jnp

from mgen_jax.benchmarks.matmul_peak import machine_info, median_seconds
from mgen_jax.configs.loading import load_config
from mgen_jax.flow.text_to_video_sampler import TextToVideo
from mgen_jax.models.text.text_inputs import tokenize_prompts

_QUICKSTART = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "quickstart.py")

FULL = {
    "quickstart": dict(overrides=(), videos=16, steps=None, repeats=3),
    "mid": dict(overrides=("dit.width=1024", "dit.depth=4", "dit.num_heads=8",
                           "dit.mlp_dim=2816", "dit.scan_unroll=1", "data.frames=32",
                           "data.height=256", "data.width=256"),
                videos=1, steps=10, repeats=1),
}
QUICK = {
    "quickstart": dict(overrides=("data.frames=8", "data.height=16", "data.width=16"),
                       videos=2, steps=3, repeats=1),
}
PROMPTS = ("a red circle moving left", "a blue square moving up", "a green triangle moving down",
           "a yellow disc sliding right")


def _pipeline(overrides) -> TextToVideo:
    cfg = load_config(os.path.normpath(_QUICKSTART), overrides)
    keys = jax.random.split(jax.random.key(0), 3)
    pipeline = TextToVideo(cfg, tae_params=None, text_params=None, dit_params=None,
                           latent_shift=0.0, latent_scale=1.0, mesh=None, rules=None)
    pipeline.params = {"tae": pipeline.tae.init(keys[0]),
                       "text": pipeline.text_encoders.init(keys[1]),
                       "dit": pipeline.dit.init(keys[2])}
    return pipeline


def bench_model(overrides, *, videos: int, steps: int | None, repeats: int) -> dict:
    pipeline = _pipeline(overrides)
    cfg = pipeline.cfg
    steps = steps or cfg.eval.sample_steps
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(videos)]

    def generate():
        return pipeline.generate(prompts, steps=steps, guidance_scale=cfg.eval.guidance_scale,
                                 batch_size=videos)

    start = time.perf_counter()
    generate()
    compile_and_first = time.perf_counter() - start
    call = median_seconds(generate, repeats=repeats, warmup=0)["median"]

    data = cfg.data
    shape = pipeline.latent_shape(videos, data.frames, data.height, data.width)
    tae = pipeline.tae
    decode = jax.jit(lambda p, z: tae.bind(p).decode_tiled(z, data.frames))
    z = jnp.zeros(shape, jnp.float32)
    decode_s = median_seconds(lambda: decode(pipeline.params["tae"], z), repeats=repeats)["median"]
    text = pipeline.text_encoders
    tokens = tokenize_prompts(cfg.text, prompts, fps=data.fps)
    ids = {n: jnp.asarray(t["ids"]) for n, t in tokens.items()}
    mask = {n: jnp.asarray(t["mask"]) for n, t in tokens.items()}
    encode = jax.jit(lambda p, i, m: text.bind(p)(i, m))
    encode_s = median_seconds(lambda: encode(pipeline.params["text"], ids, mask),
                              repeats=repeats)["median"]
    denoise = max(call - decode_s - encode_s, 0.0)
    return {
        "videos": videos, "steps": steps, "latent_shape": list(shape[1:]),
        "frames_hw": [data.frames, data.height, data.width],
        "dit": {k: cfg.dit[k] for k in ("width", "depth", "num_heads", "mlp_dim")},
        "compile_and_first_call_s": compile_and_first,
        "seconds_per_call": call,
        "seconds_per_video": call / videos,
        "seconds_per_denoising_step": denoise / steps,
        "decode_seconds": decode_s,
        "decode_share": decode_s / call,
        "text_encode_seconds": encode_s,
    }


def sample_bench(quick: bool = False) -> dict:
    models = QUICK if quick else FULL
    result = {"benchmark": "sample", "quick": quick, "machine": machine_info()}
    for name, spec in models.items():
        result[name] = bench_model(spec["overrides"], videos=spec["videos"], steps=spec["steps"],
                                   repeats=spec["repeats"])
    result["summary"] = {
        name: (f"{result[name]['seconds_per_video']:.3g} s/video, "
               f"{result[name]['seconds_per_denoising_step']:.3g} s/step x {result[name]['steps']}, "
               f"decode {100 * result[name]['decode_share']:.0f}% of a call, compile "
               f"{result[name]['compile_and_first_call_s']:.0f} s")
        for name in models}
    return result
