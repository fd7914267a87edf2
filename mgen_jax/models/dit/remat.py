"""Named rematerialisation policies for the scanned transformer block.

    none                nothing recomputed: every intermediate of every layer is kept
    full                only each layer's input (the scan carry) is kept; the block is recomputed
    save_dots           keep matmul outputs against weights (no batch dims), recompute the rest
                        (norms, activations, attention softmax)
    save_attention_out  keep only the self-attention output (the most expensive thing to recompute
                        at long sequence lengths), recompute the projections and FFN
    offload             like save_attention_out, but the saved tensor lives in host memory
                        (pinned_host) between forward and backward; TPU/GPU only
"""
import jax

ATTENTION_OUT = "attention_out"   # checkpoint_name tag set in block.py

_POLICIES = {
    "full": lambda: jax.checkpoint_policies.nothing_saveable,
    "save_dots": lambda: jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "save_attention_out": lambda: jax.checkpoint_policies.save_only_these_names(ATTENTION_OUT),
    "offload": lambda: jax.checkpoint_policies.save_and_offload_only_these_names(
        names_which_can_be_saved=[], names_which_can_be_offloaded=[ATTENTION_OUT],
        offload_src="device", offload_dst="pinned_host"),
}


def apply_remat(body, policy: str):
    """Wrap a scan body in jax.checkpoint with the named policy ('none' returns it unchanged)."""
    if policy == "none":
        return body
    if policy not in _POLICIES:
        raise ValueError(f"remat policy {policy!r} unknown; choose none or one of {sorted(_POLICIES)}")
    # prevent_cse=False: inside scan, CSE cannot undo the remat, and keeping it off is faster.
    return jax.checkpoint(body, policy=_POLICIES[policy](), prevent_cse=False)
