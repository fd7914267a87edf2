"""TPU generations: HBM per chip and peak dense bf16 FLOP/s.

Sources (Cloud TPU system-architecture pages, "key specifications" tables, read 2026; the peak
numbers are also those of the JAX scaling book `tpus.md`, see reference/perf_anchors.md):
  v4   32 GiB HBM2,  275 TFLOP/s bf16   (cloud.google.com/tpu/docs/v4)
  v5e  16 GiB HBM2,  197 TFLOP/s bf16   (cloud.google.com/tpu/docs/v5e)
  v5p  95 GiB HBM2e, 459 TFLOP/s bf16   (cloud.google.com/tpu/docs/v5p)
  v6e  32 GiB HBM,   918 TFLOP/s bf16   (cloud.google.com/tpu/docs/v6e)
HBM is counted in GiB (2**30 bytes): what the runtime reports as a chip's memory limit.
"""
import dataclasses

GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class TpuChip:
    name: str
    hbm_bytes: int          # per chip
    peak_bf16_flops: float  # dense, per chip, per second
    device_kind: str        # jax Device.device_kind of this generation


CHIPS = {
    "v4": TpuChip("v4", 32 * GIB, 275e12, "TPU v4"),
    "v5e": TpuChip("v5e", 16 * GIB, 197e12, "TPU v5 lite"),
    "v5p": TpuChip("v5p", 95 * GIB, 459e12, "TPU v5"),
    "v6e": TpuChip("v6e", 32 * GIB, 918e12, "TPU v6 lite"),
}


def chip_for_topology(topology: str) -> TpuChip:
    """'v5p:8x8x4' -> the v5p entry."""
    generation = topology.split(":", 1)[0].strip().lower()
    if generation not in CHIPS:
        raise ValueError(f"TPU generation {generation!r} of topology {topology!r} unknown; "
                         f"choose one of {sorted(CHIPS)} (e.g. v5p:8x8x4)")
    return CHIPS[generation]
