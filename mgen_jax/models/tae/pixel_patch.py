"""Space/time-to-depth patching in front of the autoencoder (and its inverse after it).

A (pt, ps) patch folds pt frames and ps x ps pixels into channels, so the convolutional trunk
starts at a lower resolution. Frame counts that are not a multiple of pt are padded by repeating
the last frame; decode crops them away again."""
import jax
import jax.numpy as jnp


def space_time_to_depth(video: jax.Array, patch) -> jax.Array:
    """[B, T, H, W, C] -> [B, ceil(T/pt), H/ps, W/ps, pt*ps*ps*C]."""
    pt, ps = patch
    if pt == 1 and ps == 1:
        return video
    b, t, h, w, c = video.shape
    if h % ps or w % ps:
        raise ValueError(f"frame size {h}x{w} is not divisible by the pixel patch {ps}")
    if t % pt:
        video = jnp.pad(video, ((0, 0), (0, pt - t % pt), (0, 0), (0, 0), (0, 0)), mode="edge")
        t = video.shape[1]
    x = video.reshape(b, t // pt, pt, h // ps, ps, w // ps, ps, c)
    return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, t // pt, h // ps, w // ps, -1)


def depth_to_space_time(x: jax.Array, patch) -> jax.Array:
    """Inverse of space_time_to_depth (before cropping padded frames)."""
    pt, ps = patch
    if pt == 1 and ps == 1:
        return x
    b, t, h, w, d = x.shape
    c = d // (pt * ps * ps)
    x = x.reshape(b, t, h, w, pt, ps, ps, c).transpose(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, t * pt, h * ps, w * ps, c)
