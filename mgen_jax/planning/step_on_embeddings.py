"""Compiling a DiT train step on cached text embeddings ahead of time, for `mgen plan`: the
video DiT's (plan.py) and the audio DiT's (audio_plan.py) share it."""
import time

from mgen_jax.configs.text import text_shapes


def compile_step_on_embeddings(cfg, mesh, rules, model, optimizer_cfg, steps: int, batch: dict,
                               make_step) -> dict:
    """Lower and compile a train step on cached text embeddings (the video or audio DiT's):
    batch: the abstract (sharded) batch; make_step(model, optimizer, null_text,
    null_mask) -> step(state, batch, key). Returns plan_compiled_step's contract."""
    import jax
    import jax.numpy as jnp
    from mgen_jax.models.builders import DTYPES
    from mgen_jax.parallel.sharding import replicated
    from mgen_jax.training.optimizer import make_optimizer
    from mgen_jax.training.sharded_training import (abstract_train_state, jit_train_step,
                                                    train_state_shardings)
    optimizer = make_optimizer(optimizer_cfg, steps)
    state_sh = train_state_shardings(model, optimizer, mesh, rules)
    state = abstract_train_state(model, optimizer, state_sh)
    shapes = text_shapes(cfg.text)

    def step(state, batch, key):
        # Each encoder's empty-prompt embedding; made inside the trace so it is not a constant.
        null_text = {n: jnp.zeros((length, dim), DTYPES[cfg.compute_dtype])
                     for n, (length, dim) in shapes.items()}
        null_mask = {n: jnp.zeros((length,), jnp.bool_).at[0].set(True)
                     for n, (length, _) in shapes.items()}
        return make_step(model, optimizer, null_text, null_mask)(state, batch, key)

    key = jax.ShapeDtypeStruct((), jax.eval_shape(lambda: jax.random.key(0)).dtype,
                               sharding=replicated(mesh))
    jitted = jit_train_step(step, mesh, rules, state_sh,
                            {k: v.sharding for k, v in batch.items()})
    t0 = time.perf_counter()
    lowered = jitted.lower(state, batch, key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return {"compiled": compiled, "model": model, "state": state, "state_shardings": state_sh,
            "batch": batch, "lower_s": t1 - t0, "compile_s": t2 - t1}
