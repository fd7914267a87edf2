"""DAC -> DAC-VAE conversion: encoder features and decoder output equal the `descript-audio-codec`
package's (random weights, fp32) through load_dac_autoencoder / convert_dac; both weight-norm
namings; bad checkpoints refused naming the keys; the bottleneck fresh and seeded; sharded
placement.

The reference is the real package (installed `--no-deps`, see _dac_reference). Its model modules
import `audiotools` (Descript's audio I/O library) only for AudioSignal and BaseModel, which the
encoder and decoder never touch; audiotools itself cannot be imported beside our torch (its
import needs torchaudio, whose binary must match torch's version exactly). So we import DAC's own
files without running `dac/__init__.py` and give them those two names, in a sys.modules patch
undone right after the import. Everything exercised here is DAC's code.
"""
import importlib.util
import os
import sys
import types
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax.sharding import Mesh

from mgen_jax.checkpointing.dac_convert import (convert_dac, dac_key, dac_vae_config_from_dac,
                                               fresh_bottleneck, load_dac_autoencoder)
from mgen_jax.configs.dac_vae import dac_vae_config
from mgen_jax.configs.mesh import MESH_AXES
from mgen_jax.models.audio.dac_vae import DacVAE
from mgen_jax.models.pure_model import PureModel
from mgen_jax.parallel.logical_rules import rules_from_preset
from tests.torch_reference import perturbed

# Odd widths everywhere, an odd stride (3: DAC's transposed conv then returns one sample less),
# DAC's own default n_codebooks layout shrunk.
DAC_TINY = dict(encoder_dim=3, encoder_rates=[2, 3, 4], latent_dim=13, decoder_dim=40,
                decoder_rates=[4, 3, 2], n_codebooks=3, codebook_size=11, codebook_dim=4,
                sample_rate=24000)


def _dac_reference():
    """The `dac.model.dac` module of descript-audio-codec (see the module docstring)."""
    root = os.path.dirname(importlib.util.find_spec("dac").origin)
    modules = {}
    for name in ("dac", "dac.nn", "dac.model"):  # packages whose __init__ we do not run
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(root, *name.split(".")[1:])]
        modules[name] = package
    try:
        import audiotools  # noqa: F401  (where it does import, it is used as is)
    except ImportError:
        audiotools = types.ModuleType("audiotools")
        audiotools.AudioSignal = type("AudioSignal", (), {})  # annotations and file I/O only
        audiotools.ml = types.ModuleType("audiotools.ml")
        audiotools.ml.BaseModel = torch.nn.Module  # its save/load helpers only
        modules.update({"audiotools": audiotools, "audiotools.ml": audiotools.ml})
    with mock.patch.dict(sys.modules, modules):
        return importlib.import_module("dac.model.dac")


DAC = _dac_reference().DAC


def _reference(seed=0, **overrides):
    torch.manual_seed(seed)
    return perturbed(DAC(**(DAC_TINY | overrides)), seed)


def _state_dict(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _config():
    return dac_vae_config_from_dac(DAC_TINY, latent_channels=5, base=dac_vae_config("tiny"))


def _model(cfg):
    return PureModel.create(lambda rngs: DacVAE(cfg, rngs=rngs))


def _relative_error(ours, reference):
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def _parity(reference, cfg, params, samples=2 * 3 * 4 * 9):
    """(encoder, decoder) relative errors: features of random audio, and the decoding of DAC's
    own features; ours are channels-last."""
    model = _model(cfg)
    audio = np.random.RandomState(1).uniform(-1, 1, (2, 1, samples)).astype(np.float32)
    with torch.no_grad():
        features = reference.encoder(torch.from_numpy(audio))
        decoded = reference.decoder(features).numpy()
    features = features.numpy()
    ours_features, ours_decoded = jax.jit(
        lambda p, a, f: (model.bind(p).features(a), model.bind(p).decoder(f)))(
            params, audio.transpose(0, 2, 1), features.transpose(0, 2, 1))
    ours_features, ours_decoded = np.asarray(ours_features), np.asarray(ours_decoded)
    assert ours_features.shape == features.transpose(0, 2, 1).shape
    assert ours_decoded.shape == decoded.transpose(0, 2, 1).shape
    # Not saturated by the tanh: the comparison sees the decoder's arithmetic.
    assert np.mean(np.abs(decoded) > 0.99) < 0.05
    return (_relative_error(ours_features.transpose(0, 2, 1), features),
            _relative_error(ours_decoded.transpose(0, 2, 1), decoded))


def test_dac_checkpoint_file_converts_with_parity(tmp_path):
    reference = _reference()
    path = tmp_path / "dac.pth"
    # DAC.save's layout (audiotools BaseModel.save): the state dict and the constructor kwargs.
    torch.save({"state_dict": reference.state_dict(), "metadata": {"kwargs": DAC_TINY}}, path)
    cfg, params = load_dac_autoencoder(str(path), latent_channels=5,
                                       base=dac_vae_config("tiny"))
    assert (cfg.encoder_rates, cfg.decoder_rates, cfg.feature_dim) == ((2, 3, 4), (4, 3, 2), 13)
    encoder_error, decoder_error = _parity(reference, cfg, params)
    print(f"DAC parity, relative error: encoder {encoder_error:.2e}, decoder {decoder_error:.2e}")
    assert encoder_error <= 1e-5 and decoder_error <= 1e-5


@pytest.mark.slow  # compile-heavy: CI runs it with the slow tests
def test_parametrization_weight_norm_naming_converts_the_same():
    legacy, modern = _reference(seed=3), _reference(seed=3)
    for module in modern.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
            torch.nn.utils.parametrizations.weight_norm(module)
    state = _state_dict(modern)
    assert any(k.endswith("parametrizations.weight.original1") for k in state)
    assert not any(k.endswith("weight_v") for k in state)
    cfg = _config()
    # Re-applied weight norm stores v = g * v_old / ||v_old||: other v, same kernels.
    params = convert_dac(state, cfg)
    assert not np.allclose(params["encoder"]["conv_in"]["v"],
                           convert_dac(_state_dict(legacy), cfg)["encoder"]["conv_in"]["v"])
    encoder_error, decoder_error = _parity(modern, cfg, params)
    assert encoder_error <= 1e-5 and decoder_error <= 1e-5


def test_bad_checkpoints_are_refused_naming_the_keys():
    cfg = _config()
    good = _state_dict(_reference())
    missing = "decoder.model.2.block.1.weight_v"  # the second decoder block's transposed conv
    extra = "encoder.block.9.alpha"
    bad = {k: v for k, v in good.items() if k != missing} | {extra: np.ones((1, 3, 1))}
    bad["encoder.block.0.bias"] = np.zeros(7, np.float32)
    with pytest.raises(ValueError) as err:
        convert_dac(bad, cfg)
    message = str(err.value)
    assert missing in message and "our decoder.blocks.1.up.v" in message
    assert extra in message and "encoder.block.0.bias" in message
    # Weight norm given under both namings.
    both = good | {"encoder.block.0.parametrizations.weight.original0": good[
        "encoder.block.0.weight_g"]}
    with pytest.raises(ValueError, match="both namings.*encoder.block.0.weight_g"):
        convert_dac(both, cfg)


def test_quantizer_is_skipped_and_the_bottleneck_is_fresh_and_seeded():
    cfg = _config()
    state = _state_dict(_reference())
    assert any(k.startswith("quantizer.") for k in state)
    params = convert_dac(state, cfg, seed=4)
    jax.tree.map(np.testing.assert_array_equal, params["bottleneck"], fresh_bottleneck(cfg, 4))
    other = convert_dac(state, cfg, seed=5)
    assert not np.allclose(other["bottleneck"]["to_moments"]["v"],
                           params["bottleneck"]["to_moments"]["v"])
    np.testing.assert_array_equal(other["encoder"]["conv_in"]["v"],
                                  params["encoder"]["conv_in"]["v"])
    # The converted model runs end to end: latents of the configured width; the decoder's odd
    # stride (3) returns one sample less, which the next stride (2) doubles, as DAC's does.
    model = _model(cfg)
    mean, recon = jax.jit(lambda p: (model.bind(p).encode(jnp.zeros((1, 48, 1)))[0],
                                     model.bind(p).decode(jnp.zeros((1, 4, 5)))))(params)
    assert mean.shape == (1, 2, 5) and recon.shape == (1, 24 * 4 - 2, 1)


def test_dac_default_architecture_maps_key_for_key():
    """DAC's published 44 kHz architecture (its constructor defaults): every encoder/decoder
    tensor has exactly one place in ours, with the shape it will take after re-layout."""
    with torch.device("meta"):
        reference = DAC()
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()
              if not k.startswith("quantizer.")}
    cfg = dac_vae_config_from_dac({})
    assert (cfg.sample_rate, cfg.feature_dim, tuple(cfg.encoder_rates)) == (44100, 1024,
                                                                            (2, 4, 8, 8))
    model = nnx.eval_shape(lambda: DacVAE(cfg, rngs=nnx.Rngs(0)))
    ours = {}
    for path, var in nnx.to_flat_state(nnx.state(model)):
        if path[0] in ("encoder", "decoder"):
            ours[dac_key(path, cfg)] = (path, var.get_value().shape)
    assert ours.keys() == theirs.keys()
    for key, (path, shape) in ours.items():
        size = int(np.prod(theirs[key]))
        assert int(np.prod(shape)) == size, key
        if path[-1] == "v":  # [k, in, out] from [out, in, k] (transposed: [in, out, k])
            expected = ((theirs[key][2], theirs[key][0], theirs[key][1]) if path[-2] == "up"
                        else theirs[key][::-1])
            assert shape == expected, key


def test_conversion_streams_into_shardings():
    cfg = _config()
    state = _state_dict(_reference())
    mesh = Mesh(np.asarray(jax.devices()).reshape(1, 8, 1, 1), MESH_AXES)
    rules = rules_from_preset("default")
    params = convert_dac(state, cfg, mesh=mesh, rules="default")
    reference = convert_dac(state, cfg)
    shardings = _model(cfg).shardings(mesh, rules)
    leaves = lambda tree: dict(jax.tree_util.tree_flatten_with_path(tree)[0])
    expected, unsharded = leaves(shardings), leaves(reference)
    assert leaves(params).keys() == expected.keys()
    for path, array in leaves(params).items():
        assert array.sharding == expected[path], jax.tree_util.keystr(path)
        np.testing.assert_array_equal(np.asarray(array), np.asarray(unsharded[path]))
    # 40 decoder channels split over 8 'fsdp' devices (conv_out), 13 features do not.
    assert params["decoder"]["conv_in"]["v"].sharding.spec[2] == "fsdp"
    assert params["encoder"]["conv_out"]["v"].sharding.spec[2] is None
