"""remat=save_splash_residuals keeps the splash kernel's named residuals (output, log-sum-exp):
the backward pass runs the flash forward once, not twice as under full remat, with the same
gradients. Counted as Pallas calls in the differentiated program (kernels in interpret mode)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.configs.registries import REMAT_POLICIES
from mgen_jax.models.attention.splash import splash_attention


def _pallas_calls(jaxpr) -> int:
    """Pallas calls in a jaxpr and every jaxpr nested in its equations' parameters."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == "pallas_call"
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    count += _pallas_calls(inner)
    return count


def _grad_and_calls(policy: str):
    x = jax.random.normal(jax.random.key(0), (1, 200, 2, 16))  # 200 keys: padded to 256
    w = jax.random.normal(jax.random.key(1), (16, 16)) * 0.3

    def block(x):  # projections before the kernel and a nonlinearity after it, as in the DiT
        out = splash_attention(x @ w, x @ w.T, jnp.tanh(x), block_q=128, block_kv=128,
                               interpret=True)
        return jnp.sin(out)

    checkpoint_policy = REMAT_POLICIES.load(policy)()
    if checkpoint_policy is not None:
        block = jax.checkpoint(block, policy=checkpoint_policy)
    grad = jax.grad(lambda x: jnp.sum(block(x) ** 2))
    return grad(x), _pallas_calls(jax.make_jaxpr(grad)(x).jaxpr)


@pytest.mark.parametrize("policy, calls", [("none", 2), ("full", 3),
                                           ("save_splash_residuals", 2)])
def test_flash_forward_runs_again_only_under_remat_that_drops_its_residuals(policy, calls):
    grad, counted = _grad_and_calls(policy)
    assert counted == calls  # forward kernel (x1 or x2) + the fused backward kernel
    reference, _ = _grad_and_calls("none")
    np.testing.assert_allclose(grad, reference, rtol=1e-5, atol=1e-6)


def test_the_plan_counts_the_kernel_forward_once_for_this_policy():
    reruns = {name: REMAT_POLICIES.entry(name).meta["reruns_splash_forward"]
              for name in REMAT_POLICIES.names()}
    assert reruns == {"none": False, "full": True, "save_dots": True, "save_attention_out": True,
                      "offload": True, "save_splash_residuals": False}
