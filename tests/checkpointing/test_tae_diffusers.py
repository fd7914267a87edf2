"""TAE initialised from a diffusers AutoencoderKL: exact parity with diffusers, and loud failures."""
import json

import jax
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from mgen_jax.configs.tae import tae_config  # noqa: E402
from mgen_jax.checkpointing.tae_diffusers_convert import (  # noqa: E402
    convert_diffusers_vae, init_tae_from_diffusers, load_diffusers_config,
    load_diffusers_state_dict, tae_config_from_diffusers, tae_with_inflation_init)

encode = nnx.jit(lambda model, video: model.encode(video))
decode = nnx.jit(lambda model, z, frames: model.decode(z, frames), static_argnums=2)

# Odd-ish sizes; each case also exercises one loading path.
CASES = {
    # 3 levels, 2 resnets per level (3 in the decoder), 5 latent channels; safetensors folder.
    "sd_like": dict(block_out_channels=(8, 16, 16), layers_per_block=2, norm_num_groups=4,
                    latent_channels=5, scaling_factor=0.3, shift_factor=0.1),
    # Legacy .bin with pre-refactor attention names stored as 1x1 convs.
    "legacy_bin": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                       latent_channels=16),
    # SD3 / Flux style: no quant convs; also no mid-block attention.
    "no_quant_conv": dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                          latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                          mid_block_add_attention=False),
}


def _random_vae(case: str):
    kw = dict(CASES[case])
    levels = len(kw["block_out_channels"])
    vae = diffusers.AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * levels,
                                  up_block_types=("UpDecoderBlock2D",) * levels, **kw)
    norm_scales = {id(m.weight) for m in vae.modules() if isinstance(m, torch.nn.GroupNorm)}
    torch.manual_seed(sorted(CASES).index(case))
    with torch.no_grad():  # every parameter random, so a wrong mapping cannot pass
        for p in vae.parameters():
            if p.ndim == 1:  # biases and GroupNorm affine (scales around 1)
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if id(p) in norm_scales else 0.0))
            else:  # unit-scale activations; attention logits of order 1 (softmax not uniform)
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
    return vae.eval()


def _legacy(state: dict) -> dict:
    """The pre-refactor diffusers attention names, projections saved as 1x1 convs."""
    names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    out = {}
    for key, value in state.items():
        for new, old in names.items():
            if f".attentions.0.{new}." in key:
                key = key.replace(f".{new}.", f".{old}.")
                value = value[..., None, None] if value.ndim == 2 else value
        out[key] = value
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """case -> (diffusers model, path users pass to the loader)."""
    out = {}
    for case in CASES:
        vae = _random_vae(case)
        folder = tmp_path_factory.mktemp(case)
        vae.save_pretrained(folder, safe_serialization=True)
        path = str(folder)
        if case == "legacy_bin":
            path = str(folder / "vae.bin")
            torch.save(_legacy(vae.state_dict()), path)
        out[case] = (vae, str(folder), path)
    return out


def _video(h=24, w=40, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (batch, 1, h, w, 3)).astype(np.float32)


def _reference(vae, video):
    """diffusers encode (posterior mean, logvar) and decode(mean), as channels-last frames."""
    with torch.no_grad():
        x = torch.from_numpy(video[:, 0].transpose(0, 3, 1, 2).copy())
        post = vae.encode(x).latent_dist
        recon = vae.decode(post.mean).sample
    nhwc = lambda t: t.numpy().transpose(0, 2, 3, 1)  # noqa: E731
    return nhwc(post.mean), nhwc(post.logvar), nhwc(recon)


def _rel(ours, ref):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def _base(temporal_downsamples=1):
    """The paper preset, with as many temporal downsamplings as a tiny VAE has levels for."""
    base = tae_config("paper")
    base.temporal_downsamples = temporal_downsamples
    return base


def _model(folder, path, *, temporal, temporal_downsamples=1):
    cfg = tae_config_from_diffusers(load_diffusers_config(folder), _base(temporal_downsamples))
    return init_tae_from_diffusers(folder, cfg, temporal=temporal, weights=path)


@pytest.mark.parametrize("case", list(CASES))
def test_image_model_matches_diffusers(saved, case):
    vae, folder, path = saved[case]
    model = _model(folder, path, temporal=False)
    video = _video()
    mean_ref, logvar_ref, recon_ref = _reference(vae, video)
    mean, logvar = encode(model, video)
    errors = dict(mean=_rel(mean[:, 0], mean_ref), logvar=_rel(logvar[:, 0], logvar_ref),
                  decode=_rel(decode(model, mean, 1)[:, 0], recon_ref))
    print(case, errors)
    assert max(errors.values()) <= 1e-5, errors


@pytest.mark.slow  # ~14 s; the image-model parity tests stay in the default run
def test_inflated_model_equals_diffusers_on_an_image(saved):
    """Temporal layers start as the identity: a 1-frame video (one latent frame despite 4x
    temporal compression) reproduces the image VAE, and every decoded frame equals its output."""
    vae, folder, path = saved["sd_like"]
    model = _model(folder, path, temporal=True, temporal_downsamples=2)
    video = _video(seed=1)
    mean_ref, logvar_ref, recon_ref = _reference(vae, video)
    mean, logvar = encode(model, video)
    assert mean.shape[1] == 1
    frames = decode(model, mean, None)  # all 4 decoded frames, before cropping to 1
    assert frames.shape[1] == 4
    errors = dict(mean=_rel(mean[:, 0], mean_ref), logvar=_rel(logvar[:, 0], logvar_ref),
                  **{f"frame{t}": _rel(frames[:, t], recon_ref) for t in range(4)})
    print("inflated", errors)
    assert max(errors.values()) <= 1e-5, errors


def test_sharded_and_bfloat16_checkpoints_load(saved, tmp_path):
    from safetensors.torch import save_file

    vae, folder, _ = saved["sd_like"]
    state = {k: v.contiguous() for k, v in vae.state_dict().items()}
    keys = sorted(state)
    shards = {"part-1.safetensors": keys[::2], "part-2.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: state[k].to(torch.bfloat16) for k in part}, str(tmp_path / name))
    weight_map = {k: name for name, part in shards.items() for k in part}
    (tmp_path / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    loaded = load_diffusers_state_dict(str(tmp_path))
    assert sorted(loaded) == keys
    for k in keys:  # bfloat16 keeps 8 mantissa bits
        np.testing.assert_allclose(np.asarray(loaded[k], np.float32), state[k].numpy(),
                                   rtol=2 ** -8, atol=1e-6, err_msg=k)


def test_config_mapping():
    cfg = tae_config_from_diffusers(dict(block_out_channels=[128, 256, 512, 512],
                                         layers_per_block=2, latent_channels=16,
                                         norm_num_groups=32, scaling_factor=1.5305,
                                         shift_factor=0.0609, use_quant_conv=False))
    assert (cfg.ch, tuple(cfg.ch_mult), cfg.num_res_blocks, cfg.z_channels) == (128, (1, 2, 4, 4), 2, 16)
    assert (cfg.latent_scale, cfg.latent_shift, tuple(cfg.pixel_patch)) == (1.5305, 0.0609, (1, 1))
    assert cfg.temporal_downsamples == 3 and cfg.attention
    assert tae_config_from_diffusers(dict(block_out_channels=[64, 128, 128, 128],
                                          shift_factor=None)).latent_shift == 0.0


@pytest.mark.parametrize("field, value", [
    ("act_fn", "gelu"), ("in_channels", 4), ("out_channels", 1), ("latents_mean", [0.0] * 4),
    ("block_out_channels", [8, 12]), ("norm_num_groups", 3), ("_class_name", "AutoencoderTiny"),
    ("down_block_types", ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]),
])
def test_unrepresentable_config_names_the_field(field, value):
    config = dict(block_out_channels=[8, 16], norm_num_groups=4)
    config[field] = value
    with pytest.raises(ValueError, match=field):
        tae_config_from_diffusers(config, base=tae_config("tiny"))


def test_too_many_temporal_downsamples_for_the_vae():
    with pytest.raises(ValueError, match="temporal_downsamples"):
        tae_config_from_diffusers(dict(block_out_channels=[8, 16, 16], norm_num_groups=4))  # 3 > 2


def _fresh(saved, case="sd_like", **cfg_overrides):
    """The checkpoint's state dict and an image model with abstract (not yet filled) parameters."""
    vae, folder, _ = saved[case]
    cfg = tae_config_from_diffusers(load_diffusers_config(folder), _base())
    cfg.update(cfg_overrides)
    state = {k: v.numpy() for k, v in vae.state_dict().items()}
    return state, tae_with_inflation_init(cfg, temporal=False)


def test_extra_checkpoint_key_is_named(saved):
    state, model = _fresh(saved)
    state["encoder.mid_block.attentions.0.rel_pos_bias"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"encoder\.mid_block\.attentions\.0\.rel_pos_bias"):
        convert_diffusers_vae(state, model)


def test_missing_checkpoint_key_is_named_and_nothing_is_written(saved):
    state, model = _fresh(saved)
    del state["decoder.up_blocks.1.resnets.2.conv2.bias"]
    with pytest.raises(ValueError, match=r"decoder\.up_blocks\.1\.resnets\.2\.conv2\.bias"):
        convert_diffusers_vae(state, model)
    # All or nothing: the keys that did map were not written either.
    assert isinstance(model.encoder.conv_in.spatial.kernel.get_value(), jax.ShapeDtypeStruct)


def test_shape_mismatch_is_named(saved):
    state, model = _fresh(saved, z_channels=6)  # checkpoint has 5 latent channels
    with pytest.raises(ValueError, match=r"shape mismatches: .*quant_conv\.weight"):
        convert_diffusers_vae(state, model)


def test_quant_conv_expected_unless_the_config_says_otherwise(saved):
    state, model = _fresh(saved, "no_quant_conv")
    with pytest.raises(ValueError, match=r"\bquant_conv\.weight"):
        convert_diffusers_vae(state, model)  # defaults expect quant convs in the checkpoint
