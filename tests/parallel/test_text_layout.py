"""The concatenated text pieces stay whole on every context shard: a DiT train step on an
fsdp x context mesh, whose pieces (24 + 24 + 8 tokens) would be cut across 4 context shards at
14, 28, 42, lowers no collective-permute for the concatenation or its transpose (the split in
the backward pass). Splitting the text sequence over 'context' instead (the layout before:
cross-attention keys took the video's 'act_seq') lowers 8 of them here, which shows the count
can see them. (Other permutes remain in both layouts: parameter-shaped ones, where XLA moves a
weight gradient between the fsdp-major and context-major device orders.)"""
import re

import jax
import numpy as np
import pytest

from mgen_jax.configs.loading import load_config
from mgen_jax.models.builders import build_dit
from mgen_jax.models.text.text_inputs import cached_text_example, placeholder_nulls
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.training.dit_step import make_dit_train_step_on_embeddings
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.sharded_training import (batch_shardings, init_train_state,
                                                jit_train_step, to_device_batch,
                                                train_state_shardings)

OVERRIDES = ["dit.width=32", "dit.num_heads=4", "dit.mlp_dim=64", "dit.depth=2",
             "dit.scan_unroll=1", "tae.z_channels=8", "text.precompute=True",
             "mesh.data=1", "mesh.fsdp=2", "mesh.context=4"]
LATENT_SHAPE = (4, 2, 2, 4, 8)  # 16 tokens with the smoke config's 1x1x1 patches


def _text_concat_permutes(text_rules: dict) -> int:
    """Collective-permutes the compiled step spends on concatenating / splitting sequences."""
    cfg = load_config("experiments/quickstart.py:smoke", OVERRIDES)
    assert [cfg.text.encoders[n].max_length for n in ("byt5", "metaclip", "ul2")] == [8, 24, 24]
    mesh = build_mesh(cfg.mesh, devices=jax.devices()[:8])
    rules = {**rules_from_preset(cfg.mesh.rules), **text_rules}
    dit = build_dit(cfg)
    optimizer = make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps)
    null_text, null_mask = placeholder_nulls(cfg.text)
    step = make_dit_train_step_on_embeddings(dit, optimizer, flow_cfg=cfg.flow, latent_shift=0.0,
                                             latent_scale=1.0, null_text=null_text,
                                             null_mask=null_mask)
    rng = np.random.default_rng(0)
    batch = {"latent_mean": rng.normal(size=LATENT_SHAPE).astype(np.float32),
             "latent_logvar": np.full(LATENT_SHAPE, -4.0, np.float32),
             **cached_text_example(cfg.text, LATENT_SHAPE[0])}
    state_sh = train_state_shardings(dit, optimizer, mesh, rules)
    batch_sh = batch_shardings(mesh, rules, batch)
    state = init_train_state(dit, optimizer, jax.random.key(0), state_sh)
    # The production (partitionable) threefry: the classic one the suite's conftest selects
    # draws the step's noise through concatenated counters, which permute across shards.
    with jax.threefry_partitionable(True):
        compiled = jit_train_step(step, mesh, rules, state_sh, batch_sh).lower(
            state, to_device_batch(batch, batch_sh), jax.random.key(1)).compile()
    permutes = [line for line in compiled.as_text().splitlines() if " collective-permute(" in line]
    assert permutes, "expected some permutes in this layout (see the docstring)"
    ops = [re.search(r'op_name="[^"]*/(\w+)"', line) for line in permutes]
    return sum(op is not None and op.group(1) in ("concatenate", "split") for op in ops)


@pytest.mark.slow  # ~28 s (a whole sharded step lowered); test budget
def test_text_pieces_lower_no_collective_permute():
    assert _text_concat_permutes({}) == 0


@pytest.mark.slow  # a second compile; shows the count above can fail
def test_text_split_over_context_lowers_collective_permutes():
    assert _text_concat_permutes({"act_text": "context"}) > 0
