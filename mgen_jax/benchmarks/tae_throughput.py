"""`mgen bench tae`: TAE encode/decode throughput and peak memory across clip lengths.

At one fixed resolution, for each frame count:

  * peak memory of the jit'ed tiled encode and tiled decode, from XLA's compiled memory analysis
    (argument + output + temp - alias bytes; compile only, so long clips need not fit), next to
    the untiled decode, whose activations grow with the clip; the growth ratio from the shortest
    to the longest clip is the headline (Movie Gen decodes any length in flat memory);
  * the peak memory of a 1080p decode with spatial tiles as well (compile only);
  * throughput in frames/s of the tiled encode and decode, run for real (warm-up, then the
    median of repeats) at the lengths listed in `timed_frames`.

The model is the paper-size TAE (SD-VAE backbone ch 128, mult 1,2,4,4, z 16, inflated) with
Movie Gen's tiles (encode 32 frames, decode 4 latent frames with 2 overlapping).

    mgen bench tae [--json=F] [--quick]
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.benchmarks.matmul_peak import machine_info, median_seconds
from mgen_jax.configs.tae import spatial_compression, tae_config, temporal_compression
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.autoencoder import TemporalAutoencoder

FULL = dict(size="paper", height=64, width=64, frames=(64, 128, 256, 512), timed_frames=(64,),
            repeats=1, untiled_frames=(64, 128),
            # 1080p: spatial tiles of 32 latent pixels (256 px) overlapping by 4, compile only.
            hd=dict(frames=64, height=1080, width=1920, spatial_tile=32, spatial_overlap=4))
QUICK = dict(size="tiny", height=32, width=32, frames=(32, 64), timed_frames=(32,), repeats=1,
             untiled_frames=(32, 64),
            hd=dict(frames=32, height=64, width=96, spatial_tile=4, spatial_overlap=2))


def _memory(compiled) -> dict:
    m = compiled.memory_analysis()
    row = {"argument_bytes": m.argument_size_in_bytes, "output_bytes": m.output_size_in_bytes,
           "temp_bytes": m.temp_size_in_bytes, "alias_bytes": m.alias_size_in_bytes}
    row["peak_bytes"] = (row["argument_bytes"] + row["output_bytes"] + row["temp_bytes"]
                         - row["alias_bytes"])
    return row


def tae_bench(quick: bool = False) -> dict:
    shape = QUICK if quick else FULL
    cfg = tae_config(shape["size"])
    tae = PureModel.create(lambda rngs: TemporalAutoencoder(cfg, rngs=rngs))
    c, s = temporal_compression(cfg), spatial_compression(cfg)
    h, w = shape["height"], shape["width"]

    def encode(params, video):
        return tae.bind(params).encode_tiled(video)

    def decode(params, z):
        return tae.bind(params).decode_tiled(z)

    def decode_untiled(params, z):
        return tae.bind(params).decode(z)

    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tae.abstract_params())
    memory, compiled = [], {}
    for frames in shape["frames"]:
        video = jax.ShapeDtypeStruct((1, frames, h, w, 3), jnp.float32)
        z = jax.ShapeDtypeStruct((1, frames // c, h // s, w // s, cfg.z_channels), jnp.float32)
        row = {"frames": frames}
        for name, fn, arg in (("encode_tiled", encode, video), ("decode_tiled", decode, z)):
            start = time.perf_counter()
            compiled[name, frames] = jax.jit(fn).trace(abstract, arg).lower().compile()
            row[name] = _memory(compiled[name, frames])
            row[name]["compile_seconds"] = time.perf_counter() - start
        if frames in shape["untiled_frames"]:
            row["decode_untiled"] = _memory(
                jax.jit(decode_untiled).trace(abstract, z).lower().compile())
        memory.append(row)

    def growth(name, rows):
        rows = [r for r in rows if name in r]
        first, last = rows[0], rows[-1]
        return {"from_frames": first["frames"], "to_frames": last["frames"],
                "peak_ratio": last[name]["peak_bytes"] / first[name]["peak_bytes"],
                "temp_ratio": last[name]["temp_bytes"] / max(first[name]["temp_bytes"], 1)}

    hd = shape["hd"]
    hd_cfg = tae_config(shape["size"])
    hd_cfg.tiling.update(spatial_tile=hd["spatial_tile"], spatial_overlap=hd["spatial_overlap"])
    hd_tae = PureModel.create(lambda rngs: TemporalAutoencoder(hd_cfg, rngs=rngs))
    z_hd = jax.ShapeDtypeStruct((1, hd["frames"] // c, hd["height"] // s, hd["width"] // s,
                                 cfg.z_channels), jnp.float32)
    hd_memory = _memory(jax.jit(lambda p, z: hd_tae.bind(p).decode_tiled(z)).trace(
        abstract, z_hd).lower().compile())

    params = tae.init(jax.random.key(0))
    throughput = []
    for frames in shape["timed_frames"]:
        rng = np.random.default_rng(frames)
        video = jnp.asarray(rng.uniform(-1, 1, (1, frames, h, w, 3)).astype(np.float32))
        enc, dec = compiled["encode_tiled", frames], compiled["decode_tiled", frames]
        z = enc(params, video)[0]
        t_enc = median_seconds(lambda: enc(params, video), repeats=shape["repeats"])
        t_dec = median_seconds(lambda: dec(params, z), repeats=shape["repeats"])
        throughput.append({
            "frames": frames,
            "encode_seconds": t_enc["median"], "encode_frames_per_s": frames / t_enc["median"],
            "decode_seconds": t_dec["median"], "decode_frames_per_s": frames / t_dec["median"],
        })
    return {
        "benchmark": "tae", "quick": quick, "machine": machine_info(),
        "model": {"size": shape["size"], "num_params": tae.num_params(),
                  "temporal_compression": c, "spatial_compression": s,
                  "z_channels": cfg.z_channels, "height": h, "width": w,
                  "tiles": {"encode_frames": 32, "decode_latents": 4, "decode_overlap": 2}},
        "memory": memory,
        "memory_growth": {name: growth(name, memory)
                          for name in ("encode_tiled", "decode_tiled", "decode_untiled")},
        "hd_decode": {**hd, "memory": hd_memory},
        "throughput": throughput,
    }
