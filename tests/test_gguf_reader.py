"""Behaviour of the GGUF reading API: lifetimes, views, metadata values, type tables."""

from __future__ import annotations

import gc
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGUFEndian, GGUFReader, GGUFValueType, GGUFWriter
from gguf_builders import (
    ARRAY,
    BOOL,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    KV,
    SMALL_TENSORS,
    STRING,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    Tensor,
    array,
    build_gguf,
    kv_u32,
    scalar,
    small_tensor_bytes,
    write,
    write_small_model,
)

import quantlens
from quantlens import (
    GGML_QUANT_SIZES,
    GGMLQuantizationType,
    GGUFFile,
    Metadata,
    MetadataArray,
    TensorNotFoundError,
)

# -- opening and closing ----------------------------------------------------------------


def test_context_manager_closes(small_model: Path) -> None:
    with quantlens.open_weights(small_model) as f:
        assert isinstance(f, GGUFFile)
        assert not f.closed
        assert len(f) == 3
    assert f.closed
    f.close()  # closing twice is harmless
    assert f.closed


def test_accepts_str_and_path(small_model: Path) -> None:
    with quantlens.open_weights(str(small_model)) as a, GGUFFile(small_model) as b:
        assert a.path == b.path == small_model
        assert a.paths == b.paths == (small_model,)
        assert a.split is None
        assert a.file_size == small_model.stat().st_size


@pytest.mark.parametrize(
    "use",
    [
        lambda f: f.version,
        lambda f: f.endianness,
        lambda f: f.alignment,
        lambda f: f.data_offset,
        lambda f: f.metadata,
        lambda f: f.tensors,
        lambda f: f.tensor("norm.weight"),
        lambda f: f.tensor_bytes("norm.weight"),
        lambda f: f.file_type,
        lambda f: f.split,
        lambda f: f.paths,
        lambda f: len(f),
        lambda f: "norm.weight" in f,
        lambda f: list(f),
    ],
    ids=[
        "version",
        "endianness",
        "alignment",
        "data_offset",
        "metadata",
        "tensors",
        "tensor",
        "tensor_bytes",
        "file_type",
        "split",
        "paths",
        "len",
        "contains",
        "iter",
    ],
)
def test_closed_file_raises_value_error(small_model: Path, use) -> None:  # type: ignore[no-untyped-def]
    f = quantlens.open_weights(small_model)
    use(f)  # works while open, and fills any cache
    f.close()
    with pytest.raises(ValueError, match="closed"):
        use(f)
    assert "closed" in repr(f)


def test_views_and_arrays_outlive_the_file(small_model: Path) -> None:
    f = quantlens.open_weights(small_model)
    first = f.tensor_bytes("tok_embd.weight")
    second = f.tensor_bytes("tok_embd.weight")
    other = f.tensor_bytes("norm.weight")
    tokens = f.metadata["tokenizer.ggml.tokens"]
    assert np.shares_memory(first, second)
    assert not np.shares_memory(first, other)
    f.close()
    del f
    gc.collect()
    expected = small_tensor_bytes("tok_embd.weight").ravel()
    assert np.array_equal(first, expected)
    assert np.array_equal(second, expected)
    assert np.array_equal(other, small_tensor_bytes("norm.weight").ravel())
    assert tokens.tolist() == ["<s>", "</s>", "hé", "世界"]


def test_views_are_zero_copy_and_read_only(small_model: Path) -> None:
    data = small_model.read_bytes()
    with quantlens.open_weights(small_model) as f:
        for t in f.tensors:
            view = f.tensor_bytes(t.name)
            assert view.dtype == np.uint8 and view.shape == (t.nbytes,)
            assert view.base is not None and not view.flags.owndata
            assert not view.flags.writeable
            assert view.tobytes() == data[t.offset : t.offset + t.nbytes]
            with pytest.raises(ValueError):
                view[0] = 1
            with pytest.raises(ValueError):
                view.flags.writeable = True
            with pytest.raises(ValueError):
                view.view(np.uint8)[0] = 1
            assert memoryview(view).readonly


def test_tensor_infos(small_model: Path) -> None:
    with quantlens.open_weights(small_model) as f:
        assert [t.name for t in f.tensors] == list(SMALL_TENSORS) == list(f)
        for i, (name, (ty, byte_shape)) in enumerate(SMALL_TENSORS.items()):
            t = f.tensor(name)
            assert name in f
            assert t.index == i and t.shard == 0
            assert t.type_id == int(ty) and t.type_name == ty.name
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(t.type_id)]
            shape = (*byte_shape[:-1], byte_shape[-1] // size * block)
            assert tuple(t.shape) == shape
            assert list(t.ne) == list(reversed(shape))
            assert t.n_elements == int(np.prod(shape))
            assert t.nbytes == int(np.prod(byte_shape))
            assert t.offset == f.data_offset + t.relative_offset
            assert t.offset % f.alignment == 0
            assert name in repr(t) and ty.name in repr(t)


def test_tensor_not_found_is_a_key_error(small_model: Path) -> None:
    with quantlens.open_weights(small_model) as f:
        assert "missing.weight" not in f
        for lookup in (f.tensor, f.tensor_bytes):
            with pytest.raises(KeyError) as info:
                lookup("missing.weight")
            err = info.value
            assert isinstance(err, TensorNotFoundError)
            assert isinstance(err, quantlens.QuantlensError)
            assert err.tensor == "missing.weight"
            assert err.path == str(small_model)
            assert "missing.weight" in str(err) and str(small_model) in str(err)


# -- metadata ---------------------------------------------------------------------------


def test_metadata_mapping(small_model: Path) -> None:
    with quantlens.open_weights(small_model) as f:
        m = f.metadata
        assert isinstance(m, Metadata) and isinstance(m, dict)
        assert list(m) == [
            "general.architecture",
            "testarch.context_length",
            "testarch.seed",
            "testarch.eps",
            "testarch.flag",
            "general.name",
            "tokenizer.ggml.tokens",
            "testarch.ids",
        ]
        assert m["general.architecture"] == "testarch"
        assert m["testarch.context_length"] == 2048
        assert m["testarch.seed"] == -(2**40)
        assert m["testarch.eps"] == float(np.float32(1e-5))
        assert m["testarch.flag"] is True
        assert m["general.name"] == "tiny müdel"
        assert m.types == {
            "general.architecture": "STRING",
            "testarch.context_length": "UINT32",
            "testarch.seed": "INT64",
            "testarch.eps": "FLOAT32",
            "testarch.flag": "BOOL",
            "general.name": "STRING",
            "tokenizer.ggml.tokens": "ARRAY",
            "testarch.ids": "ARRAY",
        }
        offsets = list(m.offsets.values())
        assert offsets[0] == 24 and offsets == sorted(offsets)
        assert f.metadata is m  # parsed once


def test_invalid_utf8_round_trips(tmp_path: Path) -> None:
    raw = b"ok \xff\xfe bad \xc3"
    path = tmp_path / "bytes.gguf"
    writer = GGUFWriter(path, "testarch")
    writer.add_string("test.raw", raw)  # type: ignore[arg-type]  # gguf-py writes bytes as is
    writer.add_key_value(
        "test.raw_list", [b"\x80", "fine", b"\xe4\xb8"], GGUFValueType.ARRAY, GGUFValueType.STRING
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with quantlens.open_weights(path) as f:
        value = f.metadata["test.raw"]
        assert isinstance(value, str)
        assert value.startswith("ok ")
        assert value.encode("utf-8", "surrogateescape") == raw
        items = f.metadata["test.raw_list"]
        assert [s.encode("utf-8", "surrogateescape") for s in items.tolist()] == [
            b"\x80",
            b"fine",
            b"\xe4\xb8",
        ]
        assert items[1] == "fine"


@pytest.fixture
def typed_arrays(tmp_path: Path) -> Path:
    kvs = [
        KV("u8", ARRAY, array(UINT8, [0, 1, 255])),
        KV("i8", ARRAY, array(INT8, [-128, 0, 127])),
        KV("u16", ARRAY, array(UINT16, [0, 65535])),
        KV("i16", ARRAY, array(INT16, [-32768, 32767])),
        KV("u32", ARRAY, array(UINT32, [0, 2**32 - 1])),
        KV("i32", ARRAY, array(INT32, [-(2**31), 2**31 - 1])),
        KV("u64", ARRAY, array(UINT64, [0, 2**64 - 1])),
        KV("i64", ARRAY, array(INT64, [-(2**63), 2**63 - 1])),
        KV("f32", ARRAY, array(FLOAT32, [0.5, -2.0, float("inf")])),
        KV("f64", ARRAY, array(FLOAT64, [1e-300, -0.0])),
        KV("bool", ARRAY, array(BOOL, [True, False, True])),
        KV("str", ARRAY, array(STRING, ["a", "", "ü"])),
        KV("empty", ARRAY, array(INT32, [])),
        KV("nested", ARRAY, array(ARRAY, [(INT32, [1, 2]), (STRING, ["x"]), (UINT8, [])])),
    ]
    return write(tmp_path / "arrays.gguf", build_gguf(kvs).data)


NUMPY_DTYPES = {
    "u8": ("UINT8", np.uint8),
    "i8": ("INT8", np.int8),
    "u16": ("UINT16", np.uint16),
    "i16": ("INT16", np.int16),
    "u32": ("UINT32", np.uint32),
    "i32": ("INT32", np.int32),
    "u64": ("UINT64", np.uint64),
    "i64": ("INT64", np.int64),
    "f32": ("FLOAT32", np.float32),
    "f64": ("FLOAT64", np.float64),
    "bool": ("BOOL", np.bool_),
    "empty": ("INT32", np.int32),
}


def test_array_element_types_and_numpy(typed_arrays: Path) -> None:
    expected = {
        "u8": [0, 1, 255],
        "i8": [-128, 0, 127],
        "u16": [0, 65535],
        "i16": [-32768, 32767],
        "u32": [0, 2**32 - 1],
        "i32": [-(2**31), 2**31 - 1],
        "u64": [0, 2**64 - 1],
        "i64": [-(2**63), 2**63 - 1],
        "f32": [0.5, -2.0, float("inf")],
        "f64": [1e-300, -0.0],
        "bool": [True, False, True],
        "empty": [],
    }
    with quantlens.open_weights(typed_arrays) as f:
        for key, (type_name, dtype) in NUMPY_DTYPES.items():
            value = f.metadata[key]
            assert isinstance(value, MetadataArray)
            assert value.element_type == type_name
            assert value.tolist() == expected[key]
            assert [type(v) for v in value.tolist()] == [type(v) for v in expected[key]]
            as_numpy = value.to_numpy()
            assert as_numpy.dtype == dtype and as_numpy.dtype.isnative
            assert as_numpy.tolist() == expected[key]
            assert type_name in repr(value)
        assert str(f.metadata["f64"][1]) == "-0.0"
        with pytest.raises(TypeError):
            f.metadata["str"].to_numpy()
        with pytest.raises(TypeError):
            f.metadata["nested"].to_numpy()


def test_array_indexing(typed_arrays: Path) -> None:
    with quantlens.open_weights(typed_arrays) as f:
        s = f.metadata["str"]
        items = ["a", "", "ü"]
        assert len(s) == 3
        assert list(s) == items
        assert "ü" in s
        for i in range(-3, 3):
            assert s[i] == items[i]
        assert s[np.int64(2)] == "ü"
        for sl in [
            slice(None),
            slice(1, None),
            slice(None, -1),
            slice(None, None, -1),
            slice(None, None, 2),
            slice(-100, 100),
            slice(5, 1),
            slice(2, 0, -1),
        ]:
            assert s[sl] == items[sl], sl
        for bad in (3, -4, 100, -100, 2**63, -(2**70)):
            with pytest.raises(IndexError):
                s[bad]
        for wrong in ("0", 1.0, None):
            with pytest.raises(TypeError):
                s[wrong]  # type: ignore[index]
        with pytest.raises(ValueError):
            s[::0]
        empty = f.metadata["empty"]
        assert len(empty) == 0 and empty.tolist() == [] and empty[:] == []
        with pytest.raises(IndexError):
            empty[0]
        with pytest.raises(IndexError):
            empty[-1]


def test_nested_arrays(typed_arrays: Path) -> None:
    with quantlens.open_weights(typed_arrays) as f:
        nested = f.metadata["nested"]
        assert nested.element_type == "ARRAY"
        assert nested.tolist() == [[1, 2], ["x"], []]
        inner = nested[0]
        assert isinstance(inner, MetadataArray) and inner.element_type == "INT32"
        assert inner.to_numpy().tolist() == [1, 2]
        assert nested[-2].element_type == "STRING" and nested[-2][0] == "x"
        assert nested[2].element_type == "UINT8" and len(nested[2]) == 0
        assert [a.tolist() for a in nested[1:]] == [["x"], []]


def test_big_endian_values_equal_little_endian(tmp_path: Path) -> None:
    le = write_small_model(tmp_path / "le.gguf")
    be = write_small_model(tmp_path / "be.gguf", endian=GGUFEndian.BIG)
    with quantlens.open_weights(le) as a, quantlens.open_weights(be) as b:
        assert (a.endianness, b.endianness) == ("little", "big")
        for key, value in a.metadata.items():
            if isinstance(value, MetadataArray):
                assert b.metadata[key].tolist() == value.tolist()
            else:
                assert b.metadata[key] == value
        ids = b.metadata["testarch.ids"].to_numpy()
        assert ids.dtype.isnative and ids.tolist() == [1, -2, 3]
        for t in a.tensors:
            assert b.tensor(t.name).offset == t.offset
            # Raw bytes were given to the writer, so both files store the same bytes.
            assert np.array_equal(a.tensor_bytes(t.name), b.tensor_bytes(t.name))


# -- layout -----------------------------------------------------------------------------


def test_default_alignment_is_32(small_model: Path, tmp_path: Path) -> None:
    with quantlens.open_weights(small_model) as f:
        assert "general.alignment" not in f.metadata
        assert f.alignment == 32
        assert f.data_offset % 32 == 0
    path = tmp_path / "aligned.gguf"
    writer = GGUFWriter(path, "testarch")
    writer.add_custom_alignment(128)
    writer.add_tensor("w", np.zeros(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with quantlens.open_weights(path) as f:
        assert f.alignment == f.metadata["general.alignment"] == 128
        assert f.data_offset % 128 == 0


def test_version_2_and_crafted_layout(tmp_path: Path) -> None:
    layout = build_gguf(
        [kv_u32("general.alignment", 64), KV("x", UINT8, scalar(UINT8, 9))],
        [Tensor("a", [4, 2], 0, 0), Tensor("b", [16], 1, 64)],
        bytes(range(96)),
        alignment=64,
        version=2,
    )
    path = write(tmp_path / "v2.gguf", layout.data)
    with quantlens.open_weights(path) as f:
        assert f.version == 2
        assert f.alignment == 64
        assert f.data_offset == layout.data_offset
        a, b = f.tensors
        assert (a.shape, a.nbytes, a.offset) == ((2, 4), 32, layout.data_offset)
        assert (b.shape, b.nbytes, b.offset) == ((16,), 32, layout.data_offset + 64)
        assert f.tensor_bytes("b").tobytes() == bytes(range(64, 96))


def test_zero_tensors_and_empty_tensor(tmp_path: Path) -> None:
    path = write(tmp_path / "none.gguf", build_gguf([kv_u32("a", 1)]).data)
    with quantlens.open_weights(path) as f:
        assert len(f) == 0 and f.tensors == [] and list(f) == []
    path = write(tmp_path / "empty.gguf", build_gguf(tensors=[Tensor("e", [0, 3], 0, 0)]).data)
    with quantlens.open_weights(path) as f:
        (e,) = f.tensors
        assert e.n_elements == 0 and e.nbytes == 0 and tuple(e.shape) == (3, 0)
        assert f.tensor_bytes("e").shape == (0,)


# -- type tables ------------------------------------------------------------------------


def test_quantization_types_equal_gguf_py() -> None:
    for member in gguf.GGMLQuantizationType:
        ours = GGMLQuantizationType[member.name]
        assert int(ours) == int(member), member.name
        assert GGMLQuantizationType(int(member)).name == member.name


def test_quant_sizes_equal_gguf_py() -> None:
    for member, sizes in gguf.GGML_QUANT_SIZES.items():
        ours = GGML_QUANT_SIZES[GGMLQuantizationType(int(member))]
        if member == gguf.GGMLQuantizationType.Q8_1:
            # ggml's block_q8_1 is two f16 (d, s) and 32 int8: 36 bytes
            # (static_assert in ggml-common.h); gguf-py's table says 40.
            assert ours == (32, 36)
            assert sizes == (32, 40), "gguf-py fixed Q8_1: drop this special case"
        else:
            assert ours == sizes, member.name


def test_file_type_labels_equal_gguf_py() -> None:
    for member in gguf.LlamaFileType:
        if member == gguf.LlamaFileType.GUESSED:
            assert quantlens.file_type_label(int(member)) is None
            continue
        expected = "F32" if member.name == "ALL_F32" else member.name.removeprefix("MOSTLY_")
        assert quantlens.file_type_label(int(member)) == expected, member.name
    known = {int(m) for m in gguf.LlamaFileType}
    for value in range(64):
        if value not in known:
            # Retired ids (4, 5, 6, …) name nothing.
            assert quantlens.file_type_label(value) is None, value


@pytest.mark.parametrize(
    ("kv", "label"),
    [
        (kv_u32("general.file_type", 15), "Q4_K_M"),
        (kv_u32("general.file_type", 0), "F32"),
        (KV("general.file_type", INT32, scalar(INT32, 7)), "Q8_0"),
        (kv_u32("general.file_type", 4), None),
        (KV("general.file_type", INT32, scalar(INT32, -1)), None),
        (KV("general.file_type", UINT64, scalar(UINT64, 2**40 + 15)), None),
        (KV("general.file_type", STRING, struct.pack("<Q", 2) + b"15"), None),
        (KV("general.file_type", BOOL, scalar(BOOL, True)), None),
        (None, None),
    ],
    ids=["u32", "f32", "i32", "retired", "negative", "u64-huge", "string", "bool", "absent"],
)
def test_file_type_property(tmp_path: Path, kv: KV | None, label: str | None) -> None:
    path = write(tmp_path / "ft.gguf", build_gguf([kv] if kv else []).data)
    with quantlens.open_weights(path) as f:
        assert f.file_type == label


def _vocab(n: int) -> list[str]:
    """Strings of varied lengths: empty, ASCII, multi-byte, long."""
    pieces = ["", "a", "▁the", "世界", "x" * 70, "é\n\t", "<0x0A>"]
    return [f"{pieces[i % len(pieces)]}{i}" if i % 5 else pieces[i % len(pieces)] for i in range(n)]


@pytest.mark.parametrize("endian", ["<", ">"], ids=["le", "be"])
@pytest.mark.parametrize("n", [1, 31, 32, 33, 64, 65, 1000])
def test_long_string_arrays(tmp_path: Path, endian: str, n: int) -> None:
    """Every element of string arrays long enough to need an index, read in any order."""
    vocab = _vocab(n)
    kvs = [KV("tokens", ARRAY, array(STRING, vocab, endian)), KV("after", UINT8, b"\x07")]
    path = write(tmp_path / "vocab.gguf", build_gguf(kvs, endian=endian).data)
    with quantlens.open_weights(path) as f:
        tokens = f.metadata["tokens"]
        assert len(tokens) == n
        assert tokens.tolist() == vocab
        assert f.metadata["after"] == 7
        for i in [*range(n - 1, -1, -7), *range(-1, -n - 1, -13), n // 2, 0, n - 1]:
            assert tokens[i] == vocab[i], i
        for sl in [slice(None, None, -1), slice(5, None, 3), slice(-40, -1, 2)]:
            assert tokens[sl] == vocab[sl]
        with pytest.raises(IndexError):
            tokens[n]
    if endian == "<":
        reader = GGUFReader(path)
        assert reader.fields["tokens"].contents() == vocab
        del reader


@pytest.mark.parametrize(
    ("bad_length", "error", "prefix_delta"),
    [
        (2**63, quantlens.LimitExceededError, 0),  # over the string cap
        (10**6, quantlens.TruncatedFileError, 8),  # past the end of the file
    ],
    ids=["huge", "past-end"],
)
def test_damaged_string_deep_in_an_array(
    tmp_path: Path, bad_length: int, error: type[Exception], prefix_delta: int
) -> None:
    vocab = _vocab(100)
    good = array(STRING, vocab)
    # Find element 77's length prefix and claim a different length there.
    prefix_at = 12 + sum(8 + len(s.encode()) for s in vocab[:77])
    bad = good[:prefix_at] + struct.pack("<Q", bad_length) + good[prefix_at + 8 :]
    layout = build_gguf([KV("tokens", ARRAY, bad)])
    path = write(tmp_path / "bad.gguf", layout.data)
    payload_at = layout.data.index(bad)
    with pytest.raises(error) as info:
        quantlens.open_weights(path)
    assert info.value.offset == payload_at + prefix_at + prefix_delta
