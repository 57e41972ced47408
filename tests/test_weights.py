"""The Weights tree over GGUF (single and split), sharded safetensors and PyTorch files,
checked against gguf-py, the safetensors package and torch.load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter, quants
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from quantlens.config_enums import SupportedEncoding, WeightsFormat
from quantlens.devices import DeviceSpec
from quantlens.exceptions import TensorNotFoundError
from quantlens.ggml_types import GGMLQuantizationType as QLType
from quantlens.weights import Weights, load_weights

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
NO_CUDA = "no CUDA GPU visible to torch on this machine"


def corpus_file(rel: str) -> Path:
    path = CORPUS / rel
    if not path.exists():
        pytest.skip(f"corpus file {path} is missing")
    return path


def manifest_entry(rel: str) -> dict[str, Any]:
    manifest = json.loads(corpus_file("MANIFEST.json").read_text())
    entry: dict[str, Any] = next(f for f in manifest["files"] if f["path"] == rel)
    return entry


# -- a GGUF model written by gguf-py ---------------------------------------------------------

RNG = np.random.default_rng(7)
FLOATS = {
    "token_embd.weight": RNG.standard_normal((8, 64)).astype(np.float32),
    "blk.0.attn_q.weight": RNG.standard_normal((4, 64)).astype(np.float32),
    "blk.1.attn_q.weight": RNG.standard_normal((4, 64)).astype(np.float32),
    "blk.10.attn_q.weight": RNG.standard_normal((4, 64)).astype(np.float32),
    "blk.1.ffn_norm.weight": RNG.standard_normal(64).astype(np.float32),
    "blk.1.ffn_up.weight": RNG.standard_normal((2, 32)).astype(np.float32),
    "blk.1.ffn_down.weight": RNG.standard_normal((3, 32)).astype(np.float32),
}
TYPES = {
    "token_embd.weight": GGMLQuantizationType.Q8_0,
    "blk.0.attn_q.weight": GGMLQuantizationType.Q4_0,
    "blk.1.attn_q.weight": GGMLQuantizationType.Q8_0,
    "blk.10.attn_q.weight": GGMLQuantizationType.Q4_0,
    "blk.1.ffn_norm.weight": GGMLQuantizationType.F32,
    "blk.1.ffn_up.weight": GGMLQuantizationType.F16,
    "blk.1.ffn_down.weight": GGMLQuantizationType.BF16,
}
POSITIONS = np.arange(12, dtype=np.int32).reshape(3, 4)


def write_model(path: Path) -> Path:
    writer = GGUFWriter(path, "llama")
    writer.add_uint32("general.file_type", 7)
    for name, values in FLOATS.items():
        kind = TYPES[name]
        if kind is GGMLQuantizationType.F32:
            writer.add_tensor(name, values)
        elif kind is GGMLQuantizationType.F16:
            writer.add_tensor(name, values.astype(np.float16))
        else:
            writer.add_tensor(name, quants.quantize(values, kind), raw_dtype=kind)
    writer.add_tensor("rope.positions", POSITIONS)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def gguf_path(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model-q8_0.gguf")


@pytest.fixture
def weights(gguf_path: Path) -> Weights:
    return load_weights(gguf_path)


def reader_tensors(path: Path) -> dict[str, Any]:
    return {t.name: t for t in GGUFReader(path).tensors}


def test_attribute_and_index_paths_reach_tensors(weights: Weights) -> None:
    leaf = weights.blk[0].attn_q.weight
    assert leaf.name == "blk.0.attn_q.weight"
    assert leaf.exists()
    assert weights.blk["1"].ffn_up.weight.name == "blk.1.ffn_up.weight"
    assert weights["blk.1.ffn_up.weight"].exists()
    assert weights.name == ""
    assert not weights.blk[0].exists()
    assert not weights.blk[0].attn_k.weight.exists()
    assert "attn_q.weight" in weights.blk[0]
    assert "attn_k.weight" not in weights.blk[0]


def test_items_stay_inside_their_node(weights: Weights) -> None:
    names = [name for name, _ in weights.blk[1].items()]
    # "blk.10..." starts with "blk.1" but is not under it.
    assert names == [
        "blk.1.attn_q.weight",
        "blk.1.ffn_norm.weight",
        "blk.1.ffn_up.weight",
        "blk.1.ffn_down.weight",
    ]
    assert all(leaf.name == name for name, leaf in weights.blk[1].items())
    assert len(list(weights.items())) == len(FLOATS) + 1
    assert weights.blk[1].attn_q.weight.keys() == ["blk.1.attn_q.weight"]


def test_info_of_each_kind(weights: Weights) -> None:
    q = weights.blk[0].attn_q.weight
    assert q.shape == (4, 64)
    assert q.quantization_encoding is QLType.Q4_0
    assert q.encoding is SupportedEncoding.q4_0
    assert q.dtype == torch.uint8
    f16 = weights.blk[1].ffn_up.weight
    assert (f16.shape, f16.dtype, f16.quantization_encoding) == ((2, 32), torch.float16, None)
    assert f16.encoding is SupportedEncoding.float16
    assert weights.blk[1].ffn_down.weight.dtype == torch.bfloat16
    assert weights.rope.positions.dtype == torch.int32
    assert weights.rope.positions.encoding is SupportedEncoding.int32
    assert weights.format is WeightsFormat.gguf
    assert "Q4_0" in repr(q).upper() and "(4, 64)" in repr(q)
    assert "tensors" in repr(weights.blk)


def test_data_is_the_raw_bytes_without_a_copy(weights: Weights, gguf_path: Path) -> None:
    reference = reader_tensors(gguf_path)
    for name, leaf in weights.items():
        data = leaf.data()
        expected = np.asarray(reference[name].data)
        if leaf.quantization_encoding is not None:
            assert data.dtype == np.uint8
        if expected.dtype == data.dtype:  # gguf-py gives BF16 as bytes, quantlens as bfloat16
            assert data.shape == expected.shape, name
        else:
            assert data.shape == leaf.shape, name
        assert data.tobytes() == expected.tobytes(), name
        assert not data.flags.writeable and not data.flags.owndata, name
    assert weights.blk[1].ffn_down.weight.data().dtype.name == "bfloat16"


def test_allocate_decodes_quantized_tensors_like_gguf_py(weights: Weights, gguf_path: Path) -> None:
    reference = reader_tensors(gguf_path)
    for name in ("token_embd.weight", "blk.0.attn_q.weight"):
        tensor = weights[name].allocate(torch.float32)
        expected = quants.dequantize(reference[name].data, reference[name].tensor_type)
        assert tensor.dtype == torch.float32 and tuple(tensor.shape) == expected.shape
        np.testing.assert_array_equal(tensor.numpy(), expected)
        half = weights[name].allocate(torch.bfloat16)
        assert half.dtype == torch.bfloat16
        torch.testing.assert_close(half, torch.from_numpy(expected).to(torch.bfloat16))
        assert weights[name].allocate("float16").dtype == torch.float16


def test_allocate_without_dtype_keeps_the_stored_type(weights: Weights, gguf_path: Path) -> None:
    reference = reader_tensors(gguf_path)
    blocks = weights.blk[0].attn_q.weight.allocate()
    assert blocks.dtype == torch.uint8 and tuple(blocks.shape) == (4, 64 // 32 * 18)
    assert blocks.numpy().tobytes() == np.asarray(reference["blk.0.attn_q.weight"].data).tobytes()
    blocks[0, 0] = 1  # a private, writable copy
    norm = weights.blk[1].ffn_norm.weight.allocate()
    assert norm.dtype == torch.float32
    np.testing.assert_array_equal(norm.numpy(), FLOATS["blk.1.ffn_norm.weight"])
    positions = weights.rope.positions.allocate()
    assert positions.dtype == torch.int32
    np.testing.assert_array_equal(positions.numpy(), POSITIONS)
    bf16 = weights.blk[1].ffn_down.weight.allocate()
    assert bf16.dtype == torch.bfloat16
    expected = quants.dequantize(reference["blk.1.ffn_down.weight"].data, GGMLQuantizationType.BF16)
    np.testing.assert_array_equal(bf16.float().numpy(), expected)
    up = weights.blk[1].ffn_up.weight.allocate(torch.float32)
    np.testing.assert_array_equal(up.numpy(), FLOATS["blk.1.ffn_up.weight"].astype(np.float16))


def test_allocate_checks_the_shape(weights: Weights) -> None:
    leaf = weights.blk[0].attn_q.weight
    assert tuple(leaf.allocate(torch.float32, shape=(4, 64)).shape) == (4, 64)
    # Raw blocks may be asked for by weight shape or by byte shape.
    assert tuple(leaf.allocate(shape=(4, 64)).shape) == (4, 36)
    assert tuple(leaf.allocate(shape=[4, 36]).shape) == (4, 36)
    with pytest.raises(ValueError, match=r"has shape \(4, 64\).*not the \(64, 4\) asked for"):
        leaf.allocate(torch.float32, shape=(64, 4))
    with pytest.raises(ValueError, match="not the"):
        leaf.allocate(torch.float32, shape=(4, 36))


def test_allocate_rejects_impossible_dtypes(weights: Weights) -> None:
    with pytest.raises(ValueError, match="decodes it to float32, float16 or bfloat16"):
        weights.blk[0].attn_q.weight.allocate(torch.int32)
    with pytest.raises(ValueError, match="converts only between floating-point types"):
        weights.rope.positions.allocate(torch.float32)
    with pytest.raises(ValueError, match="dtype must be a torch dtype"):
        weights.blk[0].attn_q.weight.allocate("nonsense")


def test_allocate_places_on_the_device_and_records(weights: Weights) -> None:
    a = weights.blk[1].ffn_norm.weight.allocate(device="cpu")
    b = weights.blk[1].ffn_up.weight.allocate(device=DeviceSpec.cpu())
    c = weights.token_embd.weight.allocate(torch.float32, device=torch.device("cpu"))
    assert a.device.type == b.device.type == c.device.type == "cpu"
    assert set(weights.allocated_weights) == {
        "blk.1.ffn_norm.weight",
        "blk.1.ffn_up.weight",
        "token_embd.weight",
    }
    assert weights.blk.allocated_weights["token_embd.weight"] is c
    # One past the last GPU this machine has (gpu:0 where there is none).
    missing = DeviceSpec.accelerator(torch.cuda.device_count())
    with pytest.raises(ValueError, match=f"gpu:{missing.id} was requested"):
        weights.token_embd.weight.allocate(device=missing)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("dtype", [None, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["token_embd.weight", "blk.1.ffn_norm.weight"])
def test_allocate_on_cuda(weights: Weights, name: str, dtype: torch.dtype | None) -> None:
    on_gpu = weights[name].allocate(dtype, device="cuda:0")
    assert on_gpu.device == torch.device("cuda", 0)
    on_cpu = weights[name].allocate(dtype)
    assert on_gpu.dtype == on_cpu.dtype
    assert torch.equal(on_gpu.cpu(), on_cpu)


def test_missing_names_suggest_the_closest(weights: Weights) -> None:
    with pytest.raises(KeyError, match=r"did you mean 'blk.0.attn_q.weight'"):
        weights.blk[0].attn_qq.weight.allocate()
    with pytest.raises(TensorNotFoundError, match=r"no tensor named 'nothing\.like\.it'"):
        weights.nothing.like.it.data()
    with pytest.raises(KeyError, match="is a group of 4 tensors"):
        _ = weights.blk[1].shape
    with pytest.raises(AttributeError):
        _ = weights._private


def test_split_gguf_opens_from_any_shards_in_any_order() -> None:
    first = corpus_file("gguf/generated/facenet-onet-f16-00001-of-00002.gguf")
    second = corpus_file("gguf/generated/facenet-onet-f16-00002-of-00002.gguf")
    for paths in ([first, second], [second, first], [first]):
        weights = load_weights(paths)
        assert len(weights.files) == 1
        assert len(weights.keys()) == 21
    expected = {t["name"]: t for t in manifest_entry(str(first.relative_to(CORPUS)))["tensors"]}
    expected |= {t["name"]: t for t in manifest_entry(str(second.relative_to(CORPUS)))["tensors"]}
    for name, leaf in weights.items():
        values = leaf.allocate(torch.float32)
        assert values.numel() == expected[name]["n_elements"]
        assert values.double().sum().item() == pytest.approx(expected[name]["expected"]["sum"])


def test_k_quants_from_the_corpus_decode_like_gguf_py() -> None:
    path = corpus_file("gguf/generated/resemblyzer-typezoo.gguf")
    weights = load_weights(path)
    reference = reader_tensors(path)
    for name in ("zoo.q4_k.linear.weight", "zoo.q6_k.linear.weight"):
        expected = quants.dequantize(reference[name].data, reference[name].tensor_type)
        np.testing.assert_array_equal(weights[name].allocate(torch.float32).numpy(), expected)
        assert weights[name].data().shape == np.asarray(reference[name].data).shape


def test_big_endian_gguf_reads_the_same_values() -> None:
    little = load_weights(corpus_file("gguf/generated/resemblyzer-mixed-q4_k.gguf"))
    big = load_weights(corpus_file("gguf/generated/resemblyzer-mixed-q4_k.be.gguf"))
    for name, leaf in little.items():
        if leaf.quantization_encoding is None:
            np.testing.assert_array_equal(big[name].data(), leaf.data())
            torch.testing.assert_close(big[name].allocate(), leaf.allocate())
        torch.testing.assert_close(
            big[name].allocate(torch.float32), leaf.allocate(torch.float32), rtol=0, atol=0
        )


def test_sharded_safetensors_match_the_safetensors_package() -> None:
    folder = corpus_file("safetensors/generated/hf-gpt2-tiny-bf16")
    shards = sorted(folder.glob("*.safetensors"))
    weights = load_weights(list(reversed(shards)))
    expected: dict[str, torch.Tensor] = {}
    for shard in shards:
        expected |= load_file(shard)
    assert sorted(weights.keys()) == sorted(expected)
    for name, tensor in expected.items():
        leaf = weights[name]
        assert leaf.dtype == tensor.dtype == torch.bfloat16
        assert leaf.encoding is SupportedEncoding.bfloat16
        assert leaf.shape == tuple(tensor.shape)
        torch.testing.assert_close(leaf.allocate(), tensor, rtol=0, atol=0)
        torch.testing.assert_close(leaf.allocate(torch.float32), tensor.float(), rtol=0, atol=0)
    h0 = weights.transformer.h[0].attn.c_attn.weight
    assert h0.data().dtype.name == "bfloat16" and not h0.data().flags.writeable
    assert weights.format is WeightsFormat.safetensors
    # The folder and the index open the same model.
    assert sorted(load_weights(folder / "model.safetensors.index.json").keys()) == sorted(expected)


def test_pytorch_checkpoint_matches_torch_load() -> None:
    path = corpus_file("pytorch/generated/hf-gpt2-tiny-f32-bin/pytorch_model.bin")
    weights = load_weights(path)
    expected = torch.load(path, weights_only=True, map_location="cpu")
    assert sorted(weights.keys()) == sorted(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name].allocate(), tensor, rtol=0, atol=0)
        np.testing.assert_array_equal(weights[name].data(), tensor.numpy())
    assert weights.format is WeightsFormat.pytorch


def test_generated_safetensors_and_torch_files(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    save_file(
        {
            "model.layers.3.mlp.up_proj.weight": base.to(torch.float16),
            "model.norm.weight": torch.ones(6, dtype=torch.bfloat16),
        },
        tmp_path / "model.safetensors",
    )
    weights = load_weights(tmp_path / "model.safetensors")
    up = weights.model.layers[3].mlp.up_proj.weight
    assert up.encoding is SupportedEncoding.float16
    torch.testing.assert_close(up.allocate(torch.float32), base)
    assert weights.model.norm.weight.allocate().dtype == torch.bfloat16
    # A transposed (non-contiguous) tensor saved by torch.save reads zero-copy and right.
    torch.save({"t": base.t(), "i": torch.tensor([1, 2, 3])}, tmp_path / "ckpt.pt")
    ckpt = load_weights(tmp_path / "ckpt.pt")
    np.testing.assert_array_equal(ckpt.t.data(), base.t().numpy())
    assert not ckpt.t.data().flags.owndata
    torch.testing.assert_close(ckpt.t.allocate(), base.t())
    assert ckpt.i.allocate().dtype == torch.int64


def test_load_weights_errors(tmp_path: Path, gguf_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one weight file"):
        load_weights([])
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf"):
        load_weights(tmp_path / "missing.gguf")
    copy = write_model(tmp_path / "copy.gguf")
    with pytest.raises(ValueError, match="is in both"):
        load_weights([gguf_path, copy])
    # The same file twice is opened once.
    assert len(load_weights([gguf_path, str(gguf_path)]).files) == 1
    save_numpy({"x": np.zeros(2, np.float32)}, str(tmp_path / "x.safetensors"))
    mixed = load_weights([gguf_path, tmp_path / "x.safetensors"])
    assert mixed.x.allocate().tolist() == [0.0, 0.0]


def test_close_keeps_handed_out_arrays(gguf_path: Path) -> None:
    with load_weights(gguf_path) as weights:
        data = weights.blk[1].ffn_norm.weight.data()
    np.testing.assert_array_equal(data, FLOATS["blk.1.ffn_norm.weight"])
    with pytest.raises(ValueError, match="closed"):
        weights.blk[1].ffn_norm.weight.data()


def test_dir_offers_the_next_name_parts(weights: Weights) -> None:
    assert {"attn_q", "ffn_up", "ffn_down", "ffn_norm"} <= set(dir(weights.blk[1]))
    assert {"blk", "token_embd", "rope"} <= set(dir(weights))
