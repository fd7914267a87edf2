"""Build the device mesh ('data', 'fsdp', 'context', 'tensor') from the mesh sub-config."""
import math

import jax
import numpy as np
from jax.sharding import Mesh

from mgen_jax.configs.mesh import MESH_AXES


def resolve_axis_sizes(mesh_cfg, num_devices: int) -> tuple:
    sizes = [int(mesh_cfg[a]) for a in MESH_AXES]
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ValueError(f"mesh: {num_devices} devices cannot be split with fixed axes "
                             f"{dict(zip(MESH_AXES, sizes))}")
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ValueError(f"mesh: axes {dict(zip(MESH_AXES, sizes))} need {math.prod(sizes)} "
                         f"devices, {num_devices} available")
    return tuple(sizes)


def build_mesh(mesh_cfg, devices=None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    sizes = resolve_axis_sizes(mesh_cfg, len(devices))
    try:  # topology-aware device order where the platform offers it (TPU)
        from jax.experimental import mesh_utils
        grid = mesh_utils.create_device_mesh(sizes, devices=devices)
    except Exception:  # noqa: BLE001 - plain reshape is correct, just not topology-optimal
        grid = np.asarray(devices).reshape(sizes)
    return Mesh(grid, MESH_AXES)
