"""cuDNN flash attention on NVIDIA GPUs via `jax.nn.dot_product_attention(implementation="cudnn")`.

Layout: our [B, L, H, D] is the API's BTNH, so q/k/v pass through unchanged.

Precision: cuDNN's fused attention only takes fp16/bf16 (or fp8) q/k/v. float32 inputs are cast to
`compute_dtype` (bfloat16 by default) on the way in and the output is cast back to q's dtype, so a
float32 model loses precision inside attention on this backend (softmax statistics are still kept
in float32 by cuDNN). fp16/bf16 inputs are used as they are.

Masks: the API takes either a boolean mask broadcastable to [B, N, T, S] (cuDNN turns it into an
additive bias of shape [B, 1, Lq, Lk], so that is O(Lq * Lk) memory, and its backward requires even
lengths: we pad to even in that case) or per-example valid lengths `key_value_seq_lengths` (no
dense mask). We use lengths when there are no segment ids and the caller promises that
`key_mask` is a prefix mask (`key_mask_is_prefix=True`, e.g. right-padded text prompts); otherwise
the dense mask. Both the API's "xla" and "cudnn" implementations give a uniform average (not
zeros) on rows with nothing to attend to, so those rows are zeroed here to honour the contract.

The API implementation is an internal parameter: tests run the same layout/mask code on CPU with
implementation="xla"; with "cudnn" a non-CUDA platform raises a ValueError.
"""
import jax
import jax.extend  # not imported by `import jax`; gives the backend's platform_version
import jax.numpy as jnp

from mgen_jax.models.attention.xla import attention_mask

_CUDNN_DTYPES = (jnp.float16, jnp.bfloat16)


def _check_cuda():
    backend = jax.extend.backend.get_backend()
    if backend.platform != "gpu" or "cuda" not in backend.platform_version.lower():
        raise ValueError(
            f"attention backend 'cudnn' needs an NVIDIA GPU with CUDA; the default platform here is "
            f"{backend.platform!r} ({backend.platform_version}). Use backend='chunked' or 'xla' "
            "(or 'auto') instead.")


def _pad_len(x, axis: int, length: int, value=0):
    if x.shape[axis] == length:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, length - x.shape[axis])
    return jnp.pad(x, pad, constant_values=value)


def cudnn_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None = None,
                    segment_ids=None, *, key_mask_is_prefix: bool = False,
                    compute_dtype=jnp.bfloat16, _implementation: str = "cudnn") -> jax.Array:
    """Attention (module contract) through cuDNN's fused flash attention.

    key_mask_is_prefix: promise that every row of `key_mask` is True...True False...False, so it can
    be passed as sequence lengths instead of a dense [B, 1, Lq, Lk] mask (not checked: a mask that
    is not a prefix would be silently wrong).
    """
    if _implementation == "cudnn":
        _check_cuda()
    b, lq, _, _ = q.shape
    lk = k.shape[1]
    out_dtype = q.dtype
    dtype = q.dtype if q.dtype in _CUDNN_DTYPES else compute_dtype
    q, k, v = q.astype(dtype), k.astype(dtype), v.astype(dtype)

    kv_lengths = None
    mask = None
    has_key = None  # [B, Lq] bool: does the query row have any key to attend to
    if key_mask is not None and segment_ids is None and key_mask_is_prefix:
        kv_lengths = key_mask.sum(-1, dtype=jnp.int32)
        has_key = jnp.broadcast_to((kv_lengths > 0)[:, None], (b, lq))
        # A zero length would leave the kernel a 0/0 softmax; attend to key 0 instead, the row
        # is zeroed below (and so gets no gradient).
        kv_lengths = jnp.maximum(kv_lengths, 1)
    elif key_mask is not None or segment_ids is not None:
        mask = attention_mask(key_mask, segment_ids, b, lq, lk)  # [B, 1, Lq, Lk]
        has_key = mask[:, 0].any(-1)
        # cuDNN's backward with a bias (the mask becomes one) rejects odd lengths: pad to even;
        # padded keys are masked out, padded query rows sliced off.
        lq_even, lk_even = lq + lq % 2, lk + lk % 2
        mask = _pad_len(_pad_len(mask, 2, lq_even, False), 3, lk_even, False)
        q = _pad_len(q, 1, lq_even)
        k, v = _pad_len(k, 1, lk_even), _pad_len(v, 1, lk_even)

    out = jax.nn.dot_product_attention(q, k, v, mask=mask, key_value_seq_lengths=kv_lengths,
                                       implementation=_implementation)[:, :lq]
    if has_key is not None:
        out = jnp.where(has_key[:, :, None, None], out, jnp.zeros((), out.dtype))
    return out.astype(out_dtype)
