"""The full experiment schema: every key a config may hold, with its default, built from the pieces.

validate() compares an experiment's config against this tree, so a misspelt key in an experiment
file fails as loudly as a misspelt command-line override.
"""
import ml_collections

from mgen_jax.configs.audio_dit import audio_dit_config
from mgen_jax.configs.dac_vae import dac_vae_config
from mgen_jax.configs.data import data_config
from mgen_jax.configs.dit import dit_config
from mgen_jax.configs.evaluation import eval_config
from mgen_jax.configs.flow import flow_config
from mgen_jax.configs.mesh import mesh_config
from mgen_jax.configs.optimizer import optimizer_config
from mgen_jax.configs.tae import tae_config
from mgen_jax.configs.text import text_config
from mgen_jax.configs.training import train_config
from mgen_jax.configs.vision import clip_vision_config

def default_experiment() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        job="text_to_video",             # configs/registries.py:JOBS
        seed=0,
        param_dtype="float32",
        compute_dtype="float32",
        mesh=mesh_config(),
        data=data_config(),
        tae=tae_config(),
        tae_train=train_config(),
        tae_optimizer=optimizer_config(),
        text=text_config(),
        dit=dit_config(),
        dit_train=train_config(),
        dit_optimizer=optimizer_config(),
        flow=flow_config(),
        eval=eval_config(),
        # Movie Gen Audio (job "video_to_audio"): the DAC-VAE, the CLIP vision tower whose
        # per-frame embeddings condition the audio DiT, and the audio DiT; other jobs ignore them.
        dac_vae=dac_vae_config("tiny"),
        dac_vae_train=train_config(),
        dac_vae_optimizer=optimizer_config(),
        vision=clip_vision_config("tiny"),
        audio_dit=audio_dit_config("tiny"),
        audio_dit_train=train_config(),
        audio_dit_optimizer=optimizer_config(),
    ))
