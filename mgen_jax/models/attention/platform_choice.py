"""What attention backend "auto" means on a platform: splash on TPU, cuDNN on CUDA GPUs, the
chunked pure-JAX kernel elsewhere (CPU, ROCm)."""
import jax
import jax.extend  # not loaded by `import jax`; needed for platform_version

PLATFORM_BACKENDS = {"tpu": "splash", "gpu": "cudnn", "cuda": "cudnn"}
FALLBACK = "chunked"


def platform_backend(platform: str | None = None) -> str:
    """The backend name for `platform` (default: the default backend's; pass the mesh devices'
    platform when compiling ahead of time for another one, as `mgen plan` does)."""
    if platform is None:
        platform = jax.default_backend()
        if platform == "gpu" and "cuda" not in jax.extend.backend.get_backend().platform_version.lower():
            platform = "rocm"
    return PLATFORM_BACKENDS.get(platform, FALLBACK)
