"""One interface for every weight file: format detection from magic bytes, files that are
not what their name says, sharded models that do not add up, lazy slices and zero-copy
views."""

from __future__ import annotations

import gc
import json
import pickle
import resource
import shutil
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quantlens
from quantlens import _core
from quantlens._slice import TensorSlice

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
SHARDED = CORPUS_DIR / "safetensors" / "generated" / "hf-gpt2-tiny-bf16"
TYPEZOO = CORPUS_DIR / "gguf" / "generated" / "resemblyzer-typezoo.gguf"
BIG_ENDIAN = CORPUS_DIR / "gguf" / "generated" / "resemblyzer-mixed-q4_k.be.gguf"
needs_corpus = pytest.mark.skipif(not SHARDED.is_dir(), reason=f"no corpus at {CORPUS_DIR}")


def _save(path: Path, tensors: dict[str, Any], **kw: Any) -> Path:
    safetensors_torch.save_file(tensors, path, **kw)
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A two-shard model with an index, as ``save_pretrained`` lays it out."""
    a = {"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4)}
    b = {"b.weight": torch.ones(5, dtype=torch.bfloat16), "b.bias": torch.zeros(2)}
    _save(tmp_path / "model-00001-of-00002.safetensors", a, metadata={"format": "pt"})
    _save(tmp_path / "model-00002-of-00002.safetensors", b, metadata={"format": "pt"})
    _write_index(tmp_path, {"a.weight": 1, "b.weight": 2, "b.bias": 2})
    return tmp_path


def _write_index(folder: Path, shard_of: dict[str, int | str]) -> Path:
    weight_map = {
        k: v if isinstance(v, str) else f"model-0000{v}-of-00002.safetensors"
        for k, v in shard_of.items()
    }
    path = folder / "model.safetensors.index.json"
    path.write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}))
    return path


# --- what a file is --------------------------------------------------------------------


def test_pickle_named_safetensors_is_told_from_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=2))
    assert _core.sniff_file(path)[0] == "pickle"
    try:
        f = quantlens.open_weights(path)
    except quantlens.QuantlensError as e:
        # Read as the PyTorch checkpoint its bytes say it is, never as safetensors.
        assert "pickle" in str(e).lower() or "pytorch" in str(e).lower(), str(e)
        assert "safetensors file at byte" not in str(e)
    else:
        assert isinstance(f, quantlens.TorchFile)


def test_header_length_that_looks_like_a_pickle_marker(tmp_path: Path) -> None:
    # A 0x280-byte header starts the file with 80 02: the bytes of a pickle protocol mark.
    header = json.dumps({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})
    header = header.ljust(0x280).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x07\x09")
    assert _core.sniff_file(path)[0] == "safetensors"
    with quantlens.open_weights(path) as f:
        assert f.get_tensor("w").tolist() == [7, 9]


def test_zip_checkpoint_named_safetensors_is_read_as_pytorch(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.ones(2)}, path)
    assert _core.sniff_file(path)[0] == "zip"
    try:
        f = quantlens.open_weights(path)
    except quantlens.QuantlensError as e:
        assert "pytorch" in str(e).lower() or "zip" in str(e).lower(), str(e)
    else:
        assert isinstance(f, quantlens.TorchFile) and f.format == "pytorch"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:ab12\nsize 123\n",
            "Git LFS pointer",
        ),
        (b"<!DOCTYPE html>\n<html><body>502 Bad Gateway</body></html>", "HTML page"),
        (b'{"architectures": ["GPT2LMHeadModel"], "n_embd": 64}', "JSON document"),
        (b"", "empty file"),
        (b"\x00\x01\x02 garbage", "not a weight file"),
    ],
)
def test_files_that_are_not_weights_say_what_they_are(
    tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(quantlens.UnsupportedFormatError, match=says) as caught:
        quantlens.open_weights(path)
    assert caught.value.path == str(path)
    with pytest.raises(quantlens.UnsupportedFormatError, match=says):
        quantlens.SafetensorsFile(path)


def test_a_cut_off_shard_is_truncated_and_named(model: Path) -> None:
    shard = model / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-5])
    with pytest.raises(quantlens.TruncatedFileError, match="truncated") as caught:
        quantlens.open_weights(model)
    assert caught.value.path == str(shard)
    header_end = shard.read_bytes()[:8]
    shard.write_bytes(header_end + b'{"a"')
    with pytest.raises(quantlens.TruncatedFileError, match="JSON header"):
        quantlens.open_weights(shard)


def test_an_lfs_pointer_among_the_shards_is_named(model: Path) -> None:
    shard = model / "model-00001-of-00002.safetensors"
    shard.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n")
    with pytest.raises(quantlens.UnsupportedFormatError, match="git lfs pull") as caught:
        quantlens.open_weights(model)
    assert caught.value.path == str(shard)


# --- sharded models --------------------------------------------------------------------


def test_sharded_model_opens_from_folder_or_index(model: Path) -> None:
    for target in (model, model / "model.safetensors.index.json"):
        with quantlens.open_weights(target) as f:
            assert isinstance(f, quantlens.SafetensorsFile)
            assert f.keys() == ["a.weight", "b.bias", "b.weight"]
            assert [t.file for t in f.tensors] == [0, 1, 1]
            assert f.metadata == {"total_size": "1", "format": "pt"}
            np.testing.assert_array_equal(f.get_tensor("a.weight")[2], [8, 9, 10, 11])


def test_missing_shard_is_named(model: Path) -> None:
    (model / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(quantlens.SplitFileError, match="missing") as caught:
        quantlens.open_weights(model)
    assert caught.value.path is not None and caught.value.path.endswith("00002.safetensors")


def test_tensor_in_two_shards_is_refused(model: Path) -> None:
    (model / "model.safetensors.index.json").unlink()
    _save(model / "model-00002-of-00002.safetensors", {"a.weight": torch.zeros(1)})
    with pytest.raises(quantlens.SplitFileError, match=r"'a\.weight' is in both"):
        quantlens.open_weights(model)


def test_index_must_agree_with_the_shards(model: Path) -> None:
    _write_index(model, {"a.weight": 2, "b.weight": 1, "b.bias": 2})
    with pytest.raises(quantlens.SplitFileError, match="index puts it in"):
        quantlens.open_weights(model)
    _write_index(model, {"a.weight": 1, "b.weight": 2, "b.bias": 2, "c": 2})
    with pytest.raises(quantlens.SplitFileError, match=r"'c'.*does not hold it"):
        quantlens.open_weights(model)
    _write_index(model, {"a.weight": 1, "b.weight": 2})
    with pytest.raises(quantlens.SplitFileError, match=r"'b\.bias'.*not in the index"):
        quantlens.open_weights(model)
    _write_index(model, {"a.weight": "../model-00001-of-00002.safetensors"})
    with pytest.raises(quantlens.MalformedFileError, match="not a file name"):
        quantlens.open_weights(model)


def test_folder_without_index_reads_every_safetensors_file(model: Path) -> None:
    (model / "model.safetensors.index.json").unlink()
    with quantlens.open_weights(model) as f:
        assert len(f) == 3 and len(f.paths) == 2
    empty = model / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \*\.safetensors") as caught:
        quantlens.open_weights(empty)
    assert caught.value.filename == str(empty)


def test_pytorch_model_folders_open_like_save_pretrained_wrote_them(tmp_path: Path) -> None:
    single = tmp_path / "single"
    single.mkdir()
    torch.save({"w": torch.arange(6.0).reshape(2, 3).t()}, single / "pytorch_model.bin")
    with quantlens.open_weights(single) as f:
        assert isinstance(f, quantlens.TorchFile)
        np.testing.assert_array_equal(f.get_tensor("w"), np.arange(6.0).reshape(2, 3).T)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    torch.save({"a": torch.ones(2)}, sharded / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.zeros(3)}, sharded / "pytorch_model-00002-of-00002.bin")
    weight_map = {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}
    index = {"metadata": {"total_size": 20}, "weight_map": weight_map}
    (sharded / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with quantlens.open_weights(sharded) as f:
        assert isinstance(f, quantlens.TorchFile) and f.checkpoint_format == "pytorch-zip"
        assert f.keys() == ["a", "b"] and len(f.paths) == 2
        assert f.get_tensor("b", dtype=torch.float32).sum() == 0


# --- slices ----------------------------------------------------------------------------

_INDEX_ITEM = st.one_of(
    st.integers(-6, 5),
    st.builds(
        slice,
        st.none() | st.integers(-7, 7),
        st.none() | st.integers(-7, 7),
        st.none() | st.integers(-3, 3).filter(bool),
    ),
)


def _fits(key: tuple[Any, ...], shape: tuple[int, ...]) -> bool:
    axes = [k for k in key if k is not Ellipsis]
    ints = [(k, d) for k, d in zip(axes, shape, strict=False) if isinstance(k, int)]
    return len(axes) <= len(shape) and all(-d <= k < d for k, d in ints)


@settings(max_examples=150, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
    key=st.lists(_INDEX_ITEM, max_size=3).map(tuple),
    ellipsis=st.booleans(),
)
def test_slices_equal_full_reads(
    shape: tuple[int, ...], key: tuple[Any, ...], ellipsis: bool
) -> None:
    full = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    raw = full.reshape(-1).view(np.uint8)
    strides = [s // 4 for s in full.strides]
    sliced = TensorSlice("t", full.dtype, shape, strides, lambda: raw)
    key = (*key, Ellipsis) if ellipsis else key
    if _fits(key, shape):
        np.testing.assert_array_equal(sliced[key], full[key])
    # Strided (transposed) layouts, as PyTorch checkpoints hold them.
    if _fits(key, shape[::-1]):
        transposed = TensorSlice("t", full.dtype, shape[::-1], strides[::-1], lambda: raw)
        np.testing.assert_array_equal(transposed[key], full.T[key])


@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn", "float8_e8m0fnu", "complex64"])
def test_strided_reads_keep_ml_dtypes(name: str) -> None:
    dtype = np.dtype(getattr(ml_dtypes, name, name))
    full = np.arange(12).astype(np.float32).astype(dtype).reshape(3, 4)
    raw = full.reshape(-1).view(np.uint8)
    transposed = TensorSlice("t", dtype, (4, 3), (1, 4), lambda: raw)
    out = transposed[1:, ::-1]
    assert out.dtype == dtype and out.tobytes() == np.ascontiguousarray(full.T[1:, ::-1]).tobytes()


def test_file_slices_equal_full_reads(model: Path) -> None:
    with quantlens.open_weights(model) as f:
        s, full = f.get_slice("a.weight"), f.get_tensor("a.weight")
        assert s.shape == (3, 4) and s.dtype == np.float32 and len(s) == 3
        for key in [(1,), (slice(None, None, -1), 2), (Ellipsis, slice(1, 3)), (-1, -1)]:
            np.testing.assert_array_equal(s[key], full[key])
        assert s[1].flags.writeable and s[1].flags.c_contiguous
        with pytest.raises(IndexError):
            s[3]
        with pytest.raises(IndexError):
            s[0, 0, 0]
        with pytest.raises(TypeError):
            s[[0, 1]]


def test_slices_read_only_the_bytes_they_need(tmp_path: Path) -> None:
    # 1 GiB of u8 as a sparse file: reading all of it would fault in 1 GiB of pages.
    rows, cols = 1 << 15, 1 << 15
    header = json.dumps(
        {"big": {"dtype": "U8", "shape": [rows, cols], "data_offsets": [0, rows * cols]}}
    )
    path = tmp_path / "big.safetensors"
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(header)) + header.encode())
        out.truncate(8 + len(header) + rows * cols)
    with quantlens.open_weights(path) as f:
        s = f.get_slice("big")
        assert s.byte_range((5,)) == (5 * cols, 6 * cols)
        assert s.byte_range((slice(10, 12), slice(0, 8))) == (10 * cols, 11 * cols + 8)
        assert s.byte_range((Ellipsis, 3)) == (3, (rows - 1) * cols + 4)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for row in range(0, rows, rows // 16):
            assert s[row, :100].sum() == 0
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert grown_kib < 64 * 1024, f"slicing grew the process by {grown_kib} KiB"


@needs_corpus
@pytest.mark.parametrize("path", [TYPEZOO, BIG_ENDIAN])
def test_gguf_plain_tensors_slice(path: Path) -> None:
    with quantlens.open_weights(path) as f:
        assert isinstance(f, quantlens.GGUFFile)
        plain = [t for t in f.tensors if t.dtype in ("F32", "F16", "BF16")]
        assert plain
        for t in plain:
            full = f.get_tensor(t.name)
            s = f.get_slice(t.name)
            np.testing.assert_array_equal(s[...].astype(np.float32), full)
            np.testing.assert_array_equal(s[-1].astype(np.float32), full[-1])
            np.testing.assert_array_equal(s[..., ::-3].astype(np.float32), full[..., ::-3])
        quantized = next(t for t in f.tensors if t.dtype.startswith("Q"))
        with pytest.raises(quantlens.UnsupportedTypeError, match="get_tensor"):
            f.get_slice(quantized.name)


# --- zero copy and ownership -----------------------------------------------------------


def test_tensor_bytes_are_zero_copy_read_only_and_outlive_close(model: Path) -> None:
    f = quantlens.open_weights(model)
    first, second = f.tensor_bytes("b.weight"), f.tensor_bytes("b.weight")
    assert np.shares_memory(first, second)
    assert not first.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1
    expected = bytes(first)
    f.close()
    del f
    gc.collect()
    assert bytes(first) == expected and first.base is not None


def test_get_tensor_is_independent_and_writable(model: Path) -> None:
    with quantlens.open_weights(model) as f:
        a = f.get_tensor("a.weight")
        a += 1
        assert f.get_tensor("a.weight")[0, 0] == 0
        assert not np.shares_memory(a, f.tensor_bytes("a.weight"))

    # torch tensors view a private copy-on-write map: an in-place add works (a read-only
    # map would crash the process) and never reaches the file or the read-only views.
    shard = model / "model-00002-of-00002.safetensors"
    on_disk = shard.read_bytes()
    with quantlens.open_weights(model) as f:
        view = f.tensor_bytes("b.weight")
        t = f.get_tensor("b.weight", dtype=torch.bfloat16)
        t.add_(1)
        assert t[0] == 2 and np.array_equal(view.view(ml_dtypes.bfloat16), np.ones(5))
        converted = f.get_tensor("b.weight", dtype=torch.float32)
        converted.add_(1)
    assert shard.read_bytes() == on_disk
    with quantlens.open_weights(model) as f:
        assert f.get_tensor("b.weight", dtype=torch.bfloat16)[0] == 1


def test_closed_and_missing(model: Path) -> None:
    f = quantlens.open_weights(model)
    with pytest.raises(quantlens.TensorNotFoundError) as caught:
        f.get_tensor("nope")
    assert isinstance(caught.value, KeyError) and caught.value.tensor == "nope"
    assert "a.weight" in f and "nope" not in f and list(f) == f.keys()
    f.close()
    assert f.closed
    with pytest.raises(ValueError, match="closed"):
        f.tensor_bytes("a.weight")


@needs_corpus
def test_every_format_shares_the_interface(tmp_path: Path) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(SHARDED, copy)
    for path in (TYPEZOO, copy):
        with quantlens.open_weights(path) as f:
            assert isinstance(f, quantlens.WeightFile)
            t = f.tensors[0]
            assert t.name and t.dtype and t.nbytes is not None and t.offset > 0
            assert f.tensor_bytes(t.name).size == t.nbytes
            assert f.get_tensor(t.name).shape == t.shape
