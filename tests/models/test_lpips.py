"""LPIPS equals a PyTorch transcription of the `lpips` package (net='vgg', v0.1) after conversion.

The `lpips` package itself cannot be imported here (its torchvision is broken against this torch),
so the reference below rebuilds torchvision's vgg16().features with the same indices and lpips'
forward math, with random weights from a fixed torch seed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from mgen_jax.models.perceptual.lpips import LPIPS, lpips_video
from mgen_jax.checkpointing.lpips_convert import convert_lpips, lpips_model

LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # relu1_2 .. relu5_3 in torchvision's features indexing
SLICES = {1: range(0, 4), 2: range(4, 9), 3: range(9, 16), 4: range(16, 23), 5: range(23, 30)}


def _torch_vgg_features():
    layers, in_ch = [], 3
    for item in LAYOUT:
        if item == "M":
            layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = torch.nn.Conv2d(in_ch, item, kernel_size=3, padding=1)
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            torch.nn.init.normal_(conv.bias, std=0.05)
            layers += [conv, torch.nn.ReLU()]
            in_ch = item
    return torch.nn.Sequential(*layers)


def _torch_lpips(features, lins, x0, x1):
    """lpips.LPIPS.forward (normalize=False, spatial=False) transcribed."""
    shift = torch.tensor([-.030, -.088, -.188])[None, :, None, None]
    scale = torch.tensor([.458, .448, .450])[None, :, None, None]

    def taps(x):
        out, h = [], (x - shift) / scale
        for i, layer in enumerate(features):
            h = layer(h)
            if i in TAPS:
                out.append(h)
        return out

    def normalize_tensor(f, eps=1e-10):
        return f / (torch.sqrt(torch.sum(f ** 2, dim=1, keepdim=True)) + eps)

    val = 0
    for f0, f1, w in zip(taps(x0), taps(x1), lins):
        diff = (normalize_tensor(f0) - normalize_tensor(f1)) ** 2
        val = val + torch.nn.functional.conv2d(diff, w).mean([2, 3], keepdim=True)
    return val.reshape(-1)


@pytest.fixture(scope="module")
def torch_weights():
    torch.manual_seed(0)
    features = _torch_vgg_features().eval()
    lins = [torch.rand(1, c, 1, 1) * 0.1 for c in (64, 128, 256, 512, 512)]
    vgg_sd = {f"features.{k}": v for k, v in features.state_dict().items()}
    vgg_sd["classifier.0.weight"] = torch.zeros(4, 4)  # full vgg16 dicts carry the FC head
    lin_sd = {f"lin{k}.model.1.weight": w for k, w in enumerate(lins)}
    return features, lins, vgg_sd, lin_sd


forward = nnx.jit(lambda model, a, b: model(a, b))


def _inputs():
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 40, 56, generator=g) * 2 - 1
    x1 = torch.rand(2, 3, 40, 56, generator=g) * 2 - 1
    to_jax = lambda t: jnp.asarray(t.permute(0, 2, 3, 1).numpy())
    return x0, x1, to_jax(x0), to_jax(x1)


def test_matches_torch_reference_from_torchvision_and_lpips_names(torch_weights):
    features, lins, vgg_sd, lin_sd = torch_weights
    x0, x1, a, b = _inputs()
    with torch.no_grad():
        ref = _torch_lpips(features, lins, x0, x1).numpy()
    model = LPIPS(rngs=nnx.Rngs(0))
    convert_lpips(vgg_sd, lin_sd, model)
    ours = np.asarray(forward(model, a, b))
    assert ours.shape == (2,)
    assert np.max(np.abs(ours - ref) / np.abs(ref)) <= 1e-5, (ours, ref)

    # lpips' own naming (an lpips.LPIPS state dict: trunk, heads and scaling buffers in one).
    lpips_sd = {f"net.slice{k}.{i}.{p}": v[f"{p}"]
                for k, idx in SLICES.items() for i in idx
                for v in [dict(features[i].state_dict())] for p in v}
    lpips_sd.update(lin_sd)
    lpips_sd["scaling_layer.shift"] = torch.tensor([-.030, -.088, -.188])[None, :, None, None]
    lpips_sd["scaling_layer.scale"] = torch.tensor([.458, .448, .450])[None, :, None, None]
    pure = lpips_model()
    params = convert_lpips(lpips_sd, None, pure)
    np.testing.assert_array_equal(forward(pure.bind(params), a, b), ours)


def test_identical_images_have_zero_distance_and_videos_fold_frames():
    model = LPIPS(rngs=nnx.Rngs(0))
    video = jax.random.uniform(jax.random.key(0), (1, 2, 16, 24, 3), minval=-1, maxval=1)
    d = nnx.jit(lpips_video)(model, video, video)
    # 0 up to rounding: XLA may fuse the two inputs' channel-norm reductions differently.
    assert d.shape == (1, 2) and float(jnp.max(jnp.abs(d))) < 1e-12
    other = nnx.jit(lpips_video)(model, video, -video)
    assert bool(jnp.all(other > 0))


def test_bad_keys_are_named(torch_weights):
    _, _, vgg_sd, lin_sd = torch_weights
    pure = lpips_model()
    with pytest.raises(ValueError, match=r"features\.28\.bias"):
        convert_lpips({k: v for k, v in vgg_sd.items() if k != "features.28.bias"}, lin_sd, pure)
    with pytest.raises(ValueError, match=r"lin3\.model\.1\.weight"):
        convert_lpips(vgg_sd, {k: v for k, v in lin_sd.items() if k != "lin3.model.1.weight"}, pure)
    with pytest.raises(ValueError, match=r"features\.99\.weight"):
        convert_lpips({**vgg_sd, "features.99.weight": torch.zeros(1)}, lin_sd, pure)
    with pytest.raises(ValueError, match=r"decoder\.x"):
        convert_lpips(vgg_sd, {**lin_sd, "decoder.x": torch.zeros(1)}, pure)
    with pytest.raises(ValueError, match=r"features\.2\.weight"):
        bad = {**vgg_sd, "features.2.weight": torch.zeros(64, 32, 3, 3)}
        convert_lpips(bad, lin_sd, pure)
    with pytest.raises(ValueError, match=r"net\.slice1\.0\.weight"):  # set twice
        convert_lpips({**vgg_sd, "net.slice1.0.weight": vgg_sd["features.0.weight"]}, lin_sd, pure)
