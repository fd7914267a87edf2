"""Movie Gen Audio transformer sub-configs: the DiT over 25 Hz DAC-VAE latents (spec 6.4) and its
masked-audio-prediction training masks."""
import ml_collections

from mgen_jax.configs.registries import AUDIO_DIT_PRESETS


def audio_dit_config(size: str = "tiny") -> ml_collections.ConfigDict:
    cfg = dict(AUDIO_DIT_PRESETS.load(size))  # sizes: configs/registries.py
    cfg.update(
        size=size,                       # `--config.audio_dit.size=13b` switches the whole preset
        block_style="dit",               # LayerNorm, GELU MLP, biases (models/dit/block.py)
        # max_frames: the learned 1D position table, in latent frames (25 Hz)
        video_resample="linear",         # per-frame visual features -> audio frame rate:
                                         # "linear" or "nearest" in time (models/audio/audio_dit.py)
        timestep_features=256,           # sinusoidal features fed to the timestep MLP
        norm_eps=1e-6,
        scan_layers=True,
        scan_unroll=1,
        # Registries (configs/registries.py) name the choices of the next three keys.
        remat="none",                    # REMAT_POLICIES (models/dit/remat.py)
        attention="xla",                 # ATTENTION_BACKENDS (models/attention/)
        context_parallel="all_gather",   # CONTEXT_PARALLEL
        masking=audio_masking_config(),
        # Classifier-free guidance: the video features are dropped (zeros) in this fraction of
        # training examples, independently of the text (flow.text_dropout); sampling's
        # unconditional branch drops both.
        video_dropout=0.1,
    )
    return ml_collections.ConfigDict(cfg)


def audio_masking_config() -> ml_collections.ConfigDict:
    """Masked audio prediction (flow/audio_masks.py): the task of each training example, and how
    much of a clip is known context. The paper gives no numbers; ours: a third of the examples
    generate from nothing, the rest extend (a known prefix or suffix, either side equally often)
    or infill (known on both sides), with 10-70% of the frames known."""
    return ml_collections.ConfigDict(dict(
        generation=0.3,                  # nothing known
        extension=0.4,                   # a known prefix or suffix
        infilling=0.3,                   # known prefix and suffix, the middle generated
        min_context=0.1,                 # fraction of the frames known, uniform in [min, max]
        max_context=0.7,
    ))
