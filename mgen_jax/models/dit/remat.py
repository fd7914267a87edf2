"""Named rematerialisation policies for the scanned transformer block.

    none                nothing recomputed: every intermediate of every layer is kept
    full                only each layer's input (the scan carry) is kept; the block is recomputed
    save_dots           keep matmul outputs against weights (no batch dims), recompute the rest
                        (norms, activations, attention softmax)
    save_attention_out  keep only the self-attention output (the most expensive thing to recompute
                        at long sequence lengths), recompute the projections and FFN
    offload             like save_attention_out, but the saved tensor lives in host memory
                        (pinned_host) between forward and backward; TPU/GPU only
    save_splash_residuals  full remat, except the splash kernel's residuals (its output and
                        log-sum-exp): the backward recomputes the projections and the FFN but not
                        the flash forward (no effect with other attention backends)
"""
import jax

from mgen_jax.configs.registries import REMAT_POLICIES
from mgen_jax.models.attention.splash import RESIDUALS

ATTENTION_OUT = "attention_out"   # checkpoint_name tag set in block.py

# One function per policy of configs/registries.py:REMAT_POLICIES, each returning the
# jax.checkpoint policy (None: no checkpointing at all).
def keep_everything():
    return None


def save_nothing():
    return jax.checkpoint_policies.nothing_saveable


def save_weight_matmuls():
    return jax.checkpoint_policies.dots_with_no_batch_dims_saveable


def save_attention_out():
    return jax.checkpoint_policies.save_only_these_names(ATTENTION_OUT)


def save_splash_residuals():
    return jax.checkpoint_policies.save_only_these_names(RESIDUALS)


def offload_attention_out():
    return jax.checkpoint_policies.save_and_offload_only_these_names(
        names_which_can_be_saved=[], names_which_can_be_offloaded=[ATTENTION_OUT],
        offload_src="device", offload_dst="pinned_host")


def apply_remat(body, policy: str):
    """Wrap a scan body in jax.checkpoint with the named policy ('none' returns it unchanged)."""
    checkpoint_policy = REMAT_POLICIES.load(policy)()  # unknown names fail, listing the known
    if checkpoint_policy is None:
        return body
    # prevent_cse=False: inside scan, CSE cannot undo the remat, and keeping it off is faster.
    return jax.checkpoint(body, policy=checkpoint_policy, prevent_cse=False)
