"""Load a trained pipeline from a training workdir (config + latest checkpoints): text-to-video,
or Movie Gen Audio's video-to-audio."""
import jax

from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.flow.text_to_video_sampler import TextToVideo
from mgen_jax.flow.video_to_audio_sampler import VideoToAudio
from mgen_jax.models.builders import (autoencoder_params, build_audio_dit, build_clip_vision,
                                      build_dac_vae, build_dit, build_tae, build_tae_trainable,
                                      build_text_encoders)
from mgen_jax.checkpointing.text_encoder_checkpoint import text_encoder_params
from mgen_jax.checkpointing.vision_checkpoint import vision_tower_params
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.sharded_training import abstract_train_state, train_state_shardings
from mgen_jax.workdir import WorkdirError, checkpoint_dir, load_workdir_config


def _restore_phase(workdir, cfg, phase, model, mesh, rules, abstract_frozen=None):
    """(params, frozen, meta, step) of a phase's latest checkpoint, restored into the shardings
    of `mesh` (the optimizer state is restored too: the checkpoint holds the whole TrainState).
    params: the EMA of the parameters when the phase kept one (<phase>_optimizer.ema_decay)."""
    ckpt = PhaseCheckpointer(checkpoint_dir(workdir, phase))
    step = ckpt.latest_step()
    if step is None:
        raise WorkdirError(f"{workdir} has no {phase} checkpoint yet: train first")
    optimizer = make_optimizer(cfg[f"{phase}_optimizer"], cfg[f"{phase}_train"].steps)
    abstract = abstract_train_state(model, optimizer,
                                    train_state_shardings(model, optimizer, mesh, rules))
    state, frozen, meta = ckpt.restore(step, abstract, abstract_frozen=abstract_frozen)
    return state.sampling_params(), frozen, meta, step


def load_tae(workdir: str):
    """(TAE PureModel, params, step) of a workdir's latest TAE checkpoint."""
    cfg = load_workdir_config(workdir)
    mesh, rules = build_mesh(cfg.mesh), rules_from_preset(cfg.mesh.rules)
    params, _, _, step = _restore_phase(workdir, cfg, "tae", build_tae_trainable(cfg), mesh,
                                        rules)
    return build_tae(cfg), autoencoder_params(cfg, params), step


def load_text_to_video(workdir: str) -> TextToVideo:
    cfg = load_workdir_config(workdir)
    mesh, rules = build_mesh(cfg.mesh), rules_from_preset(cfg.mesh.rules)
    _, tae_params, _ = load_tae(workdir)
    text_encoders = build_text_encoders(cfg)
    abstract_text = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated(mesh)),
        text_encoders.abstract_params())
    # Trained on cached embeddings, the checkpoint holds no encoders: rebuild them from the
    # config (the same checkpoints / seeded random weights the cache was made with).
    cached = cfg.text.precompute
    dit_params, text_params, meta, _ = _restore_phase(
        workdir, cfg, "dit", build_dit(cfg), mesh, rules,
        abstract_frozen=None if cached else abstract_text)
    if cached:
        text_params = text_encoder_params(cfg.text, text_encoders,
                                          jax.tree.map(lambda a: a.sharding, abstract_text))
    return TextToVideo(cfg, tae_params=tae_params, text_params=text_params, dit_params=dit_params,
                       latent_shift=meta["latent_shift"], latent_scale=meta["latent_scale"],
                       mesh=mesh, rules=rules)


def load_video_to_audio(workdir: str) -> VideoToAudio:
    """The trained Movie Gen Audio pipeline of a video_to_audio workdir: DAC-VAE and audio DiT
    from their checkpoints, the frozen CLIP tower and text encoders from the config (the
    weights the latents and the text cache were made with)."""
    cfg = load_workdir_config(workdir)
    mesh, rules = build_mesh(cfg.mesh), rules_from_preset(cfg.mesh.rules)
    dac_params, _, _, _ = _restore_phase(workdir, cfg, "dac_vae", build_dac_vae(cfg), mesh, rules)
    audio_params, _, meta, _ = _restore_phase(workdir, cfg, "audio_dit", build_audio_dit(cfg),
                                              mesh, rules)
    frozen = {}
    for name, model, load in (("text", build_text_encoders(cfg),
                               lambda m, sh: text_encoder_params(cfg.text, m, sh)),
                              ("vision", build_clip_vision(cfg),
                               lambda m, sh: vision_tower_params(cfg.vision, m, sh))):
        frozen[name] = load(model, jax.tree.map(lambda _: replicated(mesh),
                                                model.abstract_params()))
    return VideoToAudio(cfg, dac_params=dac_params, vision_params=frozen["vision"],
                        text_params=frozen["text"], audio_params=audio_params,
                        latent_shift=meta["latent_shift"], latent_scale=meta["latent_scale"],
                        mesh=mesh, rules=rules)
