"""Start a DAC-VAE from a `descript-audio-codec` (DAC) PyTorch checkpoint.

    cfg, params = load_dac_autoencoder("weights_44khz_8kbps_0.0.1.pth", latent_channels=128)
    model = PureModel.create(lambda rngs: DacVAE(cfg, rngs=rngs)).bind(params)
    # or from a state dict already in memory (keys encoder.*, decoder.*, quantizer.*):
    params = convert_dac(state_dict, cfg, seed=0)

DAC's encoder and decoder fill ours one to one: every `encoder.*` / `decoder.*` key must have a
place and every parameter of ours there must be filled, else one ValueError names them all
before a tensor is read (state_dict_mapping.stream_params). Weight norm comes in either naming:
`weight_g` / `weight_v` (torch.nn.utils.weight_norm, DAC's published files) or
`parametrizations.weight.original0` / `original1` (torch.nn.utils.parametrizations).

The bottleneck has no counterpart and starts fresh (drawn from `seed`): DAC quantises its
`latent_dim` features with an RVQ whose codebooks project them to 8 dimensions each (9 x 8 = 72
in the 44 kHz model), so no slice of it is a 2 x latent_channels Gaussian head nor its inverse,
and borrowing those projections would tie the VAE's width to the codebook layout. Keeping DAC's
encoder and decoder whole means the converted model's features and its decoding of features are
exactly DAC's; only the two 1x1 convs between them (bottleneck.to_moments, .from_latents) are new.
The `quantizer.*` keys are skipped (and counted in the log).
"""
import logging
import re

import jax
import ml_collections
import numpy as np
from flax import nnx

from mgen_jax.checkpointing.state_dict_mapping import as_source, stream_params, target_shardings
from mgen_jax.configs.dac_vae import dac_vae_config, validate_dac_vae
from mgen_jax.models.audio.dac_vae import DacVAE, VAEBottleneck

log = logging.getLogger(__name__)

_BODY = ("encoder", "decoder")
_QUANTIZER = re.compile(r"^quantizer\.")
_PARAMETRIZED = re.compile(r"^(.*)\.parametrizations\.weight\.original([01])$")
_LEAF = {"g": "weight_g", "v": "weight_v", "bias": "bias", "alpha": "alpha"}
# Positions inside DAC's nn.Sequential containers.
_UNIT = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}  # ResidualUnit.block
_ENCODER_BLOCK = {"snake": 3, "down": 4}  # EncoderBlock.block; residual units at 0, 1, 2
_DECODER_BLOCK = {"snake": 0, "up": 1}  # DecoderBlock.block; residual units at 2, 3, 4

# ---------------------------------------------------------------------------------------------
# Config


def dac_vae_config_from_dac(kwargs: dict, *, latent_channels: int | None = None,
                            base: ml_collections.ConfigDict | None = None
                            ) -> ml_collections.ConfigDict:
    """Our config for a DAC model's constructor kwargs (a DAC checkpoint's metadata['kwargs'];
    DAC's defaults fill what is absent). Training keys and, unless given, latent_channels come
    from `base` (default: the 'paper' preset)."""
    defaults = dict(encoder_dim=64, encoder_rates=(2, 4, 8, 8), latent_dim=None,
                    decoder_dim=1536, decoder_rates=(8, 8, 4, 2), sample_rate=44100)
    get = lambda k: kwargs[k] if kwargs.get(k) is not None else defaults[k]
    encoder_rates = tuple(int(r) for r in get("encoder_rates"))
    feature_dim = get("latent_dim")
    if feature_dim is None:  # DAC's own default: the encoder's last width
        feature_dim = get("encoder_dim") * 2 ** len(encoder_rates)
    cfg = ml_collections.ConfigDict((dac_vae_config("paper") if base is None else base).to_dict())
    cfg.update(sample_rate=int(get("sample_rate")), encoder_dim=int(get("encoder_dim")),
               encoder_rates=encoder_rates, feature_dim=int(feature_dim),
               decoder_dim=int(get("decoder_dim")),
               decoder_rates=tuple(int(r) for r in get("decoder_rates")))
    if latent_channels is not None:
        cfg.latent_channels = int(latent_channels)
    validate_dac_vae(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# Parameter mapping


def dac_key(path: tuple, cfg) -> str:
    """The DAC state-dict key (old weight_norm naming) of one of our encoder/decoder parameters."""
    *module, leaf = [str(p) for p in path]
    side, part = module[0], module[1]
    if side == "encoder":
        prefix, blocks, inner = "encoder.block", len(cfg.encoder_rates), _ENCODER_BLOCK
        first_unit = 0
    elif side == "decoder":
        prefix, blocks, inner = "decoder.model", len(cfg.decoder_rates), _DECODER_BLOCK
        first_unit = 2
    else:
        raise KeyError(f"{'.'.join(map(str, path))} has no counterpart in DAC")
    if part in ("conv_in", "snake_out", "conv_out"):
        index = {"conv_in": 0, "snake_out": blocks + 1, "conv_out": blocks + 2}[part]
        return f"{prefix}.{index}.{_LEAF[leaf]}"
    block = f"{prefix}.{int(module[2]) + 1}.block"  # part == "blocks"
    if module[3] == "res":
        unit = int(module[4]) + first_unit
        return f"{block}.{unit}.block.{_UNIT[module[5]]}.{_LEAF[leaf]}"
    return f"{block}.{inner[module[3]]}.{_LEAF[leaf]}"


def _relayout(path: tuple):
    """PyTorch layout -> ours for one parameter: conv weights [out, in, k] (ConvTranspose1d:
    [in, out, k]) -> [k, in, out]; magnitudes [c, 1, 1] and snake alphas [1, c, 1] -> [c]."""
    leaf, module = str(path[-1]), str(path[-2])
    if leaf == "v":
        return (lambda w: w.transpose(2, 0, 1)) if module == "up" else (
            lambda w: w.transpose(2, 1, 0))
    if leaf in ("g", "alpha"):
        return lambda w: w.reshape(-1)
    return lambda w: w


class _DacSource:
    """A DAC state dict seen in our layout: weight-norm keys under their old names, tensors
    re-laid-out when read (shapes from metadata alone, so mismatches show before reading)."""

    def __init__(self, source, layouts: dict):
        self._source, self._layouts = source, layouts
        self._original, self.duplicates = {}, []
        for key in source.keys():
            m = _PARAMETRIZED.match(key)
            name = f"{m[1]}.weight_{'gv'[int(m[2])]}" if m else key
            if name in self._original:
                self.duplicates.append(f"{self._original[name]} / {key}")
            self._original[name] = key

    def keys(self) -> list[str]:
        return list(self._original)

    def __contains__(self, key) -> bool:
        return key in self._original

    def shape(self, key: str) -> tuple:
        shape = tuple(self._source.shape(self._original[key]))
        layout = self._layouts.get(key, lambda w: w)
        return layout(np.broadcast_to(np.zeros((), np.uint8), shape)).shape

    def read(self, key: str) -> np.ndarray:
        return np.ascontiguousarray(
            self._layouts.get(key, lambda w: w)(np.asarray(self._source.read(self._original[key]))))


def _is_body(path, _value) -> bool:
    return path[0] in _BODY


def fresh_bottleneck(cfg, seed: int = 0) -> dict:
    """Params (pure dict) of a new VAE bottleneck for `cfg`, drawn from `seed`."""
    bottleneck = VAEBottleneck(cfg.feature_dim, cfg.latent_channels, rngs=nnx.Rngs(seed))
    return nnx.to_pure_dict(nnx.state(bottleneck, nnx.Param))


def convert_dac(state_dict, cfg, *, seed: int = 0, mesh=None, rules=None,
                shardings: dict | None = None) -> dict:
    """Params (nnx.to_pure_dict layout of DacVAE(cfg)): the encoder and decoder from a DAC
    state dict ({key: array} or a LazyStateDict, streamed tensor by tensor), the bottleneck
    freshly initialised from `seed` (fresh_bottleneck); placed into the shardings of `mesh`
    under `rules` (see state_dict_mapping.target_shardings), or into `shardings`, or onto the
    default device. Raises a ValueError naming every unmapped, missing and mis-shaped key
    before reading a tensor."""
    model = nnx.eval_shape(lambda: DacVAE(cfg, rngs=nnx.Rngs(0)))
    if shardings is None:
        shardings = target_shardings(nnx.state(model), mesh, rules)
    body = nnx.state(model, _is_body)
    layouts = {dac_key(path, cfg): _relayout(path) for path, _ in nnx.to_flat_state(body)}
    source = _DacSource(as_source(state_dict), layouts)
    skipped = [k for k in source.keys() if _QUANTIZER.match(k)]
    if skipped:
        log.info("DAC: skipped %d quantizer keys (the VAE bottleneck replaces the RVQ)",
                 len(skipped))
    problems = ([f"weight-norm keys given under both namings: {', '.join(source.duplicates)}"]
                if source.duplicates else [])
    params = stream_params("DAC codec", body, source, lambda path: dac_key(path, cfg),
                           shardings=shardings, skip=skipped, problems=problems)
    fresh = fresh_bottleneck(cfg, seed)
    if shardings is not None:
        fresh = jax.device_put(fresh, shardings["bottleneck"])
    return {**params, "bottleneck": fresh}


# ---------------------------------------------------------------------------------------------
# Checkpoint files


def load_dac_checkpoint(path: str) -> tuple[dict, dict]:
    """(constructor kwargs, state dict of numpy arrays) from a DAC .pth file as `DAC.save` /
    audiotools' BaseModel.save write it ({'state_dict', 'metadata': {'kwargs'}}), or from a bare
    state dict file (kwargs then empty: DAC's defaults). Read whole, not streamed: the tensors
    nest under 'state_dict', and DAC's published files (~300 MB) fit in host memory."""
    import torch  # DAC checkpoints are torch pickles; imported only when reading one

    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict):
        raise ValueError(f"{path}: expected a dict (a DAC checkpoint), got {type(blob).__name__}")
    state = blob.get("state_dict", blob)
    kwargs = dict(blob.get("metadata", {}).get("kwargs", {})) if "state_dict" in blob else {}
    arrays = {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
              for k, v in state.items() if isinstance(v, torch.Tensor)}
    dropped = sorted(set(state) - set(arrays))
    if dropped:
        raise ValueError(f"{path}: state dict entries that are not tensors: {', '.join(dropped)}")
    return kwargs, arrays


def load_dac_autoencoder(path: str, *, latent_channels: int | None = None, seed: int = 0,
                         base: ml_collections.ConfigDict | None = None, mesh=None, rules=None
                         ) -> tuple[ml_collections.ConfigDict, dict]:
    """(cfg, params) of a DAC-VAE whose encoder and decoder come from the DAC checkpoint at
    `path` (architecture from its metadata) and whose bottleneck (latent_channels wide, default
    the base config's) starts fresh from `seed`. Bind with PureModel.create(...).bind(params)."""
    kwargs, state_dict = load_dac_checkpoint(path)
    cfg = dac_vae_config_from_dac(kwargs, latent_channels=latent_channels, base=base)
    return cfg, convert_dac(state_dict, cfg, seed=seed, mesh=mesh, rules=rules)
