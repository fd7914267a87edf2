"""TrainState: the whole trainable state of one model as a pytree (step, params, optimizer), and
`apply_update`, the (guarded) optimizer update every train step ends with."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from mgen_jax.training.guards import SkipNonFiniteState, guard_metrics
from mgen_jax.training.optimizer import ParamsEmaState, TrainOptimizer, find_states


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any

    @classmethod
    def create(cls, params, optimizer: optax.GradientTransformation) -> "TrainState":
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))

    def apply_gradients(self, grads, optimizer: optax.GradientTransformation,
                        loss=None) -> "TrainState":
        """One update; step + 1 even when the guard skips it. `loss` reaches the
        transformations that read it (the non-finite guard, reduce_on_plateau) as optax's extra
        argument `value`."""
        extra = {} if loss is None else {"value": loss}
        updates, opt_state = optax.with_extra_args_support(optimizer).update(
            grads, self.opt_state, self.params, **extra)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                            opt_state=opt_state)

    @property
    def ema_params(self):
        """The EMA of the parameters (optimizer.params_ema, kept in the optimizer state), or
        None when the optimizer keeps none (ema_decay 0): then the checkpoint's structure is
        that of a run without EMA."""
        found = find_states(self.opt_state, ParamsEmaState)
        return found[0].ema_params if found else None

    def sampling_params(self):
        """What sampling and evaluation use: the EMA when kept, else the parameters."""
        ema = self.ema_params
        return self.params if ema is None else ema


def apply_update(state: TrainState, grads, loss, optimizer) -> tuple[TrainState, dict]:
    """Apply `grads` (skipped when they or the loss are not finite) and report the step's
    metrics: loss, grad_norm and, for make_optimizer's optimizers, lr, skipped and
    consecutive_skips (plus guard_step's private entries)."""
    new_state = state.apply_gradients(grads, optimizer, loss=loss)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
    if isinstance(optimizer, TrainOptimizer):
        metrics["lr"] = optimizer.learning_rate(state.opt_state)
        counters = find_states(new_state.opt_state, SkipNonFiniteState)
        metrics.update(guard_metrics(loss, grads,
                                     counters[0].consecutive_skips if counters else None,
                                     optimizer.max_consecutive_skips))
    return new_state, metrics
