"""tae.init_from_diffusers: the paper TAE experiment's phase starts from a diffusers
AutoencoderKL folder (random weights here, shrunk widths), the discriminator fresh beside it;
an architecture that differs is refused naming the key."""
import jax
import numpy as np
import pytest
from flax import nnx

import diffusers
import torch

from mgen_jax.checkpointing.tae_diffusers_convert import init_tae_from_diffusers
from mgen_jax.configs.loading import load_config
from mgen_jax.models.builders import build_tae_trainable
from mgen_jax.training.init_from import initial_train_state
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.phase_runner import JobContext
from mgen_jax.training.sharded_training import train_state_shardings

# The paper experiment at widths a CPU test affords: 4 levels, 2 resnets each, z 16.
WIDTHS = (8, 16, 16, 16)
SHRINK = ["tae.ch=8", "tae.ch_mult=(1,2,2,2)", "tae.norm_groups=4", "tae.disc_ndf=8",
          "tae.disc_layers=2", "data.frames=16", "data.height=32", "data.width=32"]


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(block_out_channels=WIDTHS, layers_per_block=2,
                                  norm_num_groups=4, latent_channels=16,
                                  down_block_types=("DownEncoderBlock2D",) * 4,
                                  up_block_types=("UpDecoderBlock2D",) * 4)
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def _start(cfg, workdir):
    ctx = JobContext(cfg, str(workdir), show_progress=False)
    model = build_tae_trainable(cfg)
    optimizer = make_optimizer(cfg.tae_optimizer, cfg.tae_train.steps)
    shardings = train_state_shardings(model, optimizer, ctx.mesh, ctx.rules)
    return initial_train_state(ctx, "tae", model, optimizer, cfg.tae_train, shardings)


@pytest.mark.slow  # the paper TAE + discriminator initialised on 8 devices: minutes on 2 cores
def test_paper_tae_phase_starts_from_the_diffusers_vae(vae_folder, tmp_path):
    cfg = load_config("experiments/tae_paper.py",
                      SHRINK + [f"tae.init_from_diffusers={vae_folder}"])
    assert cfg.tae.disc_weight > 0 and cfg.tae.perceptual_weight > 0  # the paper's recipe
    state = _start(cfg, tmp_path)
    got = jax.device_get(state.params["autoencoder"])
    torch_state = diffusers.AutoencoderKL.from_pretrained(vae_folder).state_dict()
    # The first conv's spatial kernel is diffusers' (OIHW -> HWIO), not a random init.
    np.testing.assert_array_equal(
        got["encoder"]["conv_in"]["spatial"]["kernel"],
        torch_state["encoder.conv_in.weight"].numpy().transpose(2, 3, 1, 0))
    # Everything as the converter users run gives it (temporal layers as the identity).
    expected = nnx.to_pure_dict(nnx.state(init_tae_from_diffusers(vae_folder, cfg.tae,
                                                                  seed=cfg.seed)))
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b)
    assert "discriminator" in state.params


def test_a_vae_of_another_architecture_is_refused_naming_the_key(vae_folder, tmp_path):
    cfg = load_config("experiments/tae_paper.py", SHRINK + ["tae.z_channels=4",
                                                            f"tae.init_from_diffusers={vae_folder}"])
    with pytest.raises(ValueError, match=r"z_channels=16, but this experiment's tae.z_channels"):
        _start(cfg, tmp_path)
