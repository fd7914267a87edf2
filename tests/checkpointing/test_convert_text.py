"""Text-encoder checkpoint conversion: tensors streamed one at a time straight into their
NamedShardings on the 8-device CPU mesh, bad checkpoints refused (key named) before a tensor is
read, and `mgen convert` -> Orbax -> restore reproducing transformers' last_hidden_state."""
import json
import os
import re
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import save_file  # noqa: E402

from mgen_jax import cli  # noqa: E402
from mgen_jax.checkpointing import text_encoder_checkpoint  # noqa: E402
from mgen_jax.checkpointing.lazy_state_dict import LazyStateDict  # noqa: E402
from mgen_jax.checkpointing.text_encoder_checkpoint import (  # noqa: E402
    load_converted_text_encoder, text_encoder_model)
from mgen_jax.checkpointing.transformers_folder import load_transformers_state_dict  # noqa: E402
from mgen_jax.configs.mesh import MESH_AXES  # noqa: E402
from mgen_jax.checkpointing.clip_convert import load_clip_text  # noqa: E402
from mgen_jax.checkpointing.t5_convert import load_t5_encoder  # noqa: E402
from mgen_jax.parallel.logical_rules import rules_from_preset  # noqa: E402
from tests.torch_reference import perturbed  # noqa: E402

# UL2-style (gated-SiLU) and odd sizes: 40 splits over fsdp=4 and 8, 60 heads*d_kv and 72 d_ff
# over tensor=2, while vocab 101 and 5 heads do not split and must fall back to replication.
T5_TINY = dict(d_model=40, d_kv=12, num_heads=5, d_ff=72, num_layers=2, vocab_size=101,
               feed_forward_proj="gated-silu", relative_attention_num_buckets=32,
               relative_attention_max_distance=128, layer_norm_epsilon=1e-6)
CLIP_TINY = dict(vocab_size=99, hidden_size=40, num_attention_heads=5, num_hidden_layers=2,
                 intermediate_size=72, layer_norm_eps=1e-5, bos_token_id=0, pad_token_id=1,
                 hidden_act="gelu", max_position_embeddings=77, eos_token_id=50)
# An FSDP-only rule table: every 'embed' dimension over 'fsdp', everything else replicated.
FSDP_ONLY = {name: None for name in rules_from_preset("default")} | {"embed": "fsdp"}


def _save_t5(folder, seed=1, shard="30KB", **overrides):
    hf = perturbed(transformers.T5EncoderModel(transformers.T5Config(**(T5_TINY | overrides))),
                    seed)
    hf.save_pretrained(folder, max_shard_size=shard)
    return hf


def _save_clip(folder, seed=1):
    hf = perturbed(transformers.CLIPTextModel(transformers.CLIPTextConfig(**CLIP_TINY)), seed)
    hf.save_pretrained(folder)
    return hf


def _mesh(fsdp, tensor):
    return Mesh(np.asarray(jax.devices()).reshape(1, fsdp, 1, tensor), MESH_AXES)


def _leaves(params):
    return dict(jax.tree_util.tree_flatten_with_path(params)[0])


def _assert_placed(params, reference, shardings):
    """Every array sits in its expected NamedSharding and equals the unsharded conversion."""
    expected = _leaves(shardings)
    reference = _leaves(reference)
    assert _leaves(params).keys() == expected.keys() == reference.keys()
    for path, array in _leaves(params).items():
        assert array.sharding == expected[path], jax.tree_util.keystr(path)
        np.testing.assert_array_equal(np.asarray(array), np.asarray(reference[path]))


def test_t5_streams_into_fsdp_and_tensor_shardings(tmp_path):
    _save_t5(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").is_file()  # sharded, with an index
    mesh = _mesh(fsdp=4, tensor=2)
    cfg, params = load_t5_encoder(str(tmp_path), mesh=mesh, rules="default")
    _, reference = load_t5_encoder(str(tmp_path))  # unsharded, default device
    attention = params["blocks"][0]["attention"]
    # Spot checks of the default rules: embed -> fsdp, heads / mlp -> tensor, and dimensions
    # the mesh axis does not divide (vocab 101, 5 heads) replicated.
    assert params["shared"].sharding.spec == P(None, "fsdp")
    assert attention["q"]["kernel"].sharding.spec == P("fsdp", "tensor")
    assert attention["o"]["kernel"].sharding.spec == P("tensor", "fsdp")
    assert attention["relative_attention_bias"].sharding.spec == P(None, None)
    assert params["blocks"][1]["ffn"]["wi_0"]["kernel"].sharding.spec == P("fsdp", "tensor")
    assert params["final_norm"]["scale"].sharding.spec == P(None)
    assert attention["q"]["kernel"].addressable_shards[0].data.shape == (10, 30)
    model = text_encoder_model("t5", cfg)
    _assert_placed(params, reference, model.shardings(mesh, rules_from_preset("default")))

    # Or into shardings given directly (a pure dict matching the params) ...
    fsdp = model.shardings(mesh, FSDP_ONLY)
    _assert_placed(load_t5_encoder(str(tmp_path), shardings=fsdp)[1], reference, fsdp)
    # ... which must cover every parameter.
    del fsdp["blocks"][1]
    with pytest.raises(ValueError, match=r"shardings have no entry for our parameters "
                                         r"blocks\.1\."):
        load_t5_encoder(str(tmp_path), shardings=fsdp)


def test_clip_streams_into_fsdp_shardings(tmp_path):
    _save_clip(tmp_path)
    mesh = _mesh(fsdp=8, tensor=1)
    cfg, params = load_clip_text(str(tmp_path), mesh=mesh, rules=FSDP_ONLY)
    _, reference = load_clip_text(str(tmp_path))
    layer = params["layers"][1]
    assert params["token_embedding"].sharding.spec == P(None, "fsdp")
    assert params["position_embedding"].sharding.spec == P(None, "fsdp")
    assert layer["mlp"]["fc1"]["kernel"].sharding.spec == P("fsdp", None)
    assert layer["mlp"]["fc2"]["kernel"].sharding.spec == P(None, "fsdp")
    assert layer["self_attn"]["q_proj"]["bias"].sharding.spec == P(None)
    assert params["token_embedding"].addressable_shards[0].data.shape == (99, 5)
    model = text_encoder_model("clip", cfg)
    _assert_placed(params, reference, model.shardings(mesh, FSDP_ONLY))


def test_streaming_holds_about_one_tensor_not_the_model(tmp_path):
    """Peak traced host memory of a streamed conversion stays a small multiple of the largest
    tensor, while reading the state dict whole costs the whole model."""
    _save_t5(tmp_path, shard="300KB", d_model=128, d_kv=32, num_heads=4, d_ff=512, num_layers=8,
             vocab_size=2000)
    state = load_transformers_state_dict(str(tmp_path))
    total = sum(v.nbytes for v in state.values())
    largest = max(v.nbytes for v in state.values())
    del state
    load_t5_encoder(str(tmp_path))  # first call pays one-off allocations (imports, caches)
    tracemalloc.start()
    try:
        load_t5_encoder(str(tmp_path))
        streamed = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        load_transformers_state_dict(str(tmp_path))
        whole = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"model {total / 1e6:.1f} MB, largest tensor {largest / 1e6:.2f} MB: peak host memory "
          f"streamed {streamed / 1e6:.2f} MB, whole state dict {whole / 1e6:.2f} MB")
    assert total > 8 * largest
    assert whole >= total
    assert streamed < 3 * largest < total / 2


def test_bin_checkpoint_streams_like_safetensors(tmp_path):
    _save_t5(tmp_path / "st", shard="5GB")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
    state = load_transformers_state_dict(str(tmp_path / "st"))
    torch.save({k: torch.from_numpy(v) for k, v in state.items()},
               tmp_path / "bin" / "pytorch_model.bin")
    _, from_st = load_t5_encoder(str(tmp_path / "st"))
    _, from_bin = load_t5_encoder(str(tmp_path / "bin"), mesh=_mesh(8, 1), rules=FSDP_ONLY)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 from_st, from_bin)


def _count_reads(monkeypatch):
    reads = []
    original = LazyStateDict.read
    monkeypatch.setattr(LazyStateDict, "read",
                        lambda self, key: reads.append(key) or original(self, key))
    return reads


def test_extra_or_missing_tensor_fails_naming_the_key_before_reading(tmp_path, monkeypatch):
    folder = tmp_path / "t5"
    _save_t5(folder)
    index_file = folder / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    reads = _count_reads(monkeypatch)
    mesh = _mesh(4, 2)

    # An extra tensor in a shard of its own, listed in the index.
    extra = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"
    save_file({extra: np.zeros((32, 5), np.float32)}, str(folder / "model-extra.safetensors"))
    index_file.write_text(json.dumps(
        {**index, "weight_map": {**index["weight_map"], extra: "model-extra.safetensors"}}))
    with pytest.raises(ValueError, match=r"no place in the T5 encoder: " + re.escape(extra)):
        load_t5_encoder(str(folder), mesh=mesh)
    assert reads == []

    # A missing tensor: dropped from its shard and from the index.
    gone = "encoder.block.1.layer.1.DenseReluDense.wi_1.weight"
    shard = index["weight_map"][gone]
    full = load_transformers_state_dict(str(folder / shard))
    save_file({k: v for k, v in full.items() if k != gone}, str(folder / shard))
    index_file.write_text(json.dumps(
        {**index, "weight_map": {k: v for k, v in index["weight_map"].items() if k != gone}}))
    with pytest.raises(ValueError, match=r"does not fill: " + re.escape(gone)
                                         + r" \(our blocks\.1\.ffn\.wi_1\.kernel"):
        load_t5_encoder(str(folder), mesh=mesh)
    assert reads == []

    # An index naming a tensor its shard does not hold.
    index_file.write_text(json.dumps(index))
    with pytest.raises(ValueError, match=re.escape(gone) + ".*does not hold it"):
        load_t5_encoder(str(folder), mesh=mesh)

    clip = tmp_path / "clip"
    _save_clip(clip)
    state = load_transformers_state_dict(str(clip))
    # The counter does see a good checkpoint's reads (so the empty lists above mean something).
    load_clip_text(str(clip), mesh=mesh)
    assert sorted(set(reads)) == sorted(state)
    reads.clear()
    extra = "text_model.encoder.layers.2.mlp.fc1.weight"
    save_file(dict(state, **{extra: np.zeros((72, 40), np.float32)}),
              str(clip / "model.safetensors"))
    with pytest.raises(ValueError, match=r"no place in the CLIP text tower: "
                                         + re.escape(extra)):
        load_clip_text(str(clip), mesh=mesh)
    assert reads == []


def _t5_batch(vocab, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, vocab, (3, 23)).astype(np.int32)
    mask = (np.arange(23)[None] < np.asarray([[6], [17], [23]])).astype(np.int32)
    return ids * mask, mask


def _clip_batch(eos, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.full((3, 23), eos, np.int32)
    mask = np.zeros((3, 23), np.int32)
    for i, n in enumerate((6, 17, 23)):
        ids[i, :n - 1] = rng.integers(eos + 1, 99, n - 1)
        mask[i, :n] = 1
    return ids, mask


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("encoder", ["ul2", "metaclip"])
def test_mgen_convert_restores_to_transformers_outputs(tmp_path, capsys, encoder):
    folder, out = tmp_path / "hf", tmp_path / "converted" / encoder
    if encoder == "ul2":
        hf = _save_t5(folder)
        ids, mask = _t5_batch(T5_TINY["vocab_size"])
    else:
        hf = _save_clip(folder)
        ids, mask = _clip_batch(CLIP_TINY["eos_token_id"])
    cli.main(["convert", f"--encoder={encoder}", f"--checkpoint={folder}", f"--out={out}"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["encoder"] == encoder and printed["out"] == str(out)
    assert printed["num_params"] == sum(p.numel() for p in hf.parameters())
    assert sorted(os.listdir(out)) == ["encoder.json", "params"]
    assert os.listdir(out.parent) == [encoder]  # no partial directory left behind

    cfg, params = load_converted_text_encoder(str(out))
    mesh = _mesh(4, 2)
    _, sharded = load_converted_text_encoder(str(out), mesh=mesh)
    family = "t5" if encoder == "ul2" else "clip"
    model = text_encoder_model(family, cfg)
    _assert_placed(sharded, params, model.shardings(mesh, rules_from_preset("default")))

    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(ids).long(),
                 attention_mask=torch.from_numpy(mask).long()).last_hidden_state.numpy()
    for label, p in (("restored", params), ("restored into shardings", sharded)):
        out_ours = model.bind(p)(jnp.asarray(ids), jnp.asarray(mask))
        hidden = np.asarray(out_ours[0] if family == "clip" else out_ours)
        real = mask.astype(bool)
        err = _rel(hidden[real], ref[real])
        print(f"mgen convert --encoder={encoder}, {label}: max rel error {err:.2e}")
        assert err <= 1e-5


def test_mgen_convert_refuses_wrong_encoder_existing_out_and_cleans_up(tmp_path, monkeypatch):
    t5, clip = tmp_path / "t5", tmp_path / "clip"
    _save_t5(t5, tokenizer_class="ByT5Tokenizer")
    _save_clip(clip)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"--encoder=metaclip expects a CLIP checkpoint.*"
                                         r"describes a T5 model.*use --encoder=byt5 or t5 or ul2"):
        cli.main(["convert", "--encoder=metaclip", f"--checkpoint={t5}", f"--out={out}"])
    with pytest.raises(SystemExit, match=r"--encoder=ul2 expects a T5 checkpoint.*describes a "
                                         r"CLIP model.*use --encoder=metaclip"):
        cli.main(["convert", "--encoder=ul2", f"--checkpoint={clip}", f"--out={out}"])
    with pytest.raises(SystemExit, match=r"--encoder=t5: .*tokenizer_class='ByT5Tokenizer'.*"
                                         r"use --encoder=byt5"):
        cli.main(["convert", "--encoder=t5", f"--checkpoint={t5}", f"--out={out}"])

    # A conversion killed while writing leaves neither OUT nor a partial directory.
    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-save")
    with monkeypatch.context() as m:
        m.setattr(text_encoder_checkpoint.ocp.StandardCheckpointer, "save", crash)
        with pytest.raises(RuntimeError, match="killed mid-save"):
            cli.main(["convert", "--encoder=byt5", f"--checkpoint={t5}", f"--out={out}"])
    assert sorted(os.listdir(tmp_path)) == ["clip", "t5"]

    cli.main(["convert", "--encoder=byt5", f"--checkpoint={t5}", f"--out={out}"])
    with pytest.raises(SystemExit, match=f"{out} already exists"):
        cli.main(["convert", "--encoder=byt5", f"--checkpoint={t5}", f"--out={out}"])
    with pytest.raises(FileNotFoundError, match=r"not a converted text encoder: no encoder\.json"):
        load_converted_text_encoder(str(t5))
