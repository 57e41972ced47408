"""GGUF files written by quantlens, read back by gguf-py's GGUFReader (the reference) and by
quantlens: metadata of every value type, alignments, tensors of every plain type and of
quantized blocks, split output, and no files left behind when writing fails."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import quantlens
from quantlens.gguf_writer import GGUFValueType, GGUFWriter
from quantlens.testing import quantized_tensors

V = GGUFValueType
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_INT_RANGES = {
    V.UINT8: (0, 2**8 - 1),
    V.INT8: (-(2**7), 2**7 - 1),
    V.UINT16: (0, 2**16 - 1),
    V.INT16: (-(2**15), 2**15 - 1),
    V.UINT32: (0, 2**32 - 1),
    V.INT32: (-(2**31), 2**31 - 1),
    V.UINT64: (0, 2**64 - 1),
    V.INT64: (-(2**63), 2**63 - 1),
}
# gguf-py decodes strings as UTF-8; surrogates cannot be encoded.
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


def _scalar(vt: GGUFValueType) -> st.SearchStrategy[Any]:
    if vt in _INT_RANGES:
        return st.integers(*_INT_RANGES[vt])
    if vt == V.FLOAT32:
        return st.floats(width=32)
    if vt == V.FLOAT64:
        return st.floats()
    if vt == V.BOOL:
        return st.booleans()
    return _TEXT


_SCALARS = [v for v in V if v != V.ARRAY]


@st.composite
def _value(draw: st.DrawFn, depth: int = 0) -> tuple[GGUFValueType, GGUFValueType | None, Any]:
    """``(type, element type, value)``; arrays nest up to two levels."""
    kinds = [*_SCALARS, V.ARRAY] if depth < 2 else _SCALARS
    vt = draw(st.sampled_from(kinds))
    if vt != V.ARRAY:
        return vt, None, draw(_scalar(vt))
    elem = draw(st.sampled_from(kinds))
    if elem == V.ARRAY:
        inner = draw(st.sampled_from([v for v in _SCALARS if v != V.STRING]))
        items = draw(st.lists(st.lists(_scalar(inner), max_size=4), max_size=3))
        return vt, elem, (inner, items)
    return vt, elem, draw(st.lists(_scalar(elem), max_size=6))


_NUMPY = {
    **{v: v.name.lower() for v in _INT_RANGES},
    V.FLOAT32: "float32",
    V.FLOAT64: "float64",
    V.BOOL: "bool",
}

_PLAIN = {
    "F32": np.float32,
    "F16": np.float16,
    "F64": np.float64,
    "I8": np.int8,
    "I16": np.int16,
    "I32": np.int32,
    "I64": np.int64,
}


@st.composite
def _tensor(draw: st.DrawFn) -> tuple[np.ndarray, str, tuple[int, ...]]:
    """``(bytes as uint8, ggml type name, row-major shape)``."""
    kind = draw(st.sampled_from([*_PLAIN, "BF16", "quantized"]))
    if kind == "quantized":
        t = draw(quantized_tensors(max_rows=3, max_blocks_per_row=2))
        return t.data.reshape(-1), t.qtype.name, t.shape
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    size = 2 if kind == "BF16" else np.dtype(_PLAIN[kind]).itemsize
    n = math.prod(shape) * size
    raw = draw(st.binary(min_size=n, max_size=n))
    return np.frombuffer(raw, dtype=np.uint8).copy(), kind, shape


def _add(
    writer: GGUFWriter, key: str, spec: tuple[GGUFValueType, GGUFValueType | None, Any]
) -> None:
    vt, elem, value = spec
    if elem == V.ARRAY:
        inner, items = value
        typed = [np.array(i, dtype=_NUMPY[inner]) for i in items]
        writer.add_metadata(key, typed, V.ARRAY, V.ARRAY)
        return
    writer.add_metadata(key, value, vt, elem)


def _expected_scalar(vt: GGUFValueType, value: Any) -> Any:
    if vt == V.FLOAT32:
        return np.float32(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, (float, np.floating)):
        return bool(
            np.array(a, dtype=np.float64).tobytes() == np.array(b, dtype=np.float64).tobytes()
        ) or (np.isnan(a) and np.isnan(b))
    return bool(a == b)


def _check_gguf_py_field(field: Any, spec: tuple[GGUFValueType, GGUFValueType | None, Any]) -> None:
    vt, elem, value = spec
    types = [gguf.GGUFValueType(int(t)) for t in field.types]
    if vt != V.ARRAY:
        assert types == [gguf.GGUFValueType(int(vt))]
        assert _same(field.contents(), _expected_scalar(vt, value))
        return
    assert types[0] == gguf.GGUFValueType.ARRAY
    if elem == V.ARRAY:
        # gguf-py reads nested arrays without keeping their structure; quantlens is checked.
        assert len(field.data) == len(value[1])
        return
    if value:
        assert types[1] == gguf.GGUFValueType(int(elem))
    got = field.contents()
    assert len(got) == len(value)
    for g, w in zip(got, value, strict=True):
        assert _same(g, _expected_scalar(elem, w) if elem is not None else w)


def _check_quantlens_value(
    got: Any, type_name: str, spec: tuple[GGUFValueType, GGUFValueType | None, Any]
) -> None:
    vt, elem, value = spec
    assert type_name == vt.name
    if vt != V.ARRAY:
        assert _same(got, _expected_scalar(vt, value))
        return
    assert got.element_type == elem.name if elem is not None else True
    items = got.tolist()
    if elem == V.ARRAY:
        inner, lists = value
        assert len(items) == len(lists)
        for g, w in zip(items, lists, strict=True):
            assert g.element_type == inner.name
            g = g.tolist()
            assert len(g) == len(w)
            assert all(_same(a, _expected_scalar(inner, b)) for a, b in zip(g, w, strict=True))
        return
    assert len(items) == len(value)
    assert all(_same(a, _expected_scalar(elem, b)) for a, b in zip(items, value, strict=True))


@SETTINGS
@given(
    metadata=st.lists(_value(), max_size=8),
    tensors=st.lists(_tensor(), max_size=5),
    alignment=st.sampled_from([8, 16, 32, 64, 128, 1024]),
)
def test_written_files_read_identically(
    tmp_path: Path, metadata: list[Any], tensors: list[Any], alignment: int
) -> None:
    path = tmp_path / "w.gguf"
    path.unlink(missing_ok=True)
    with GGUFWriter(path, "test", alignment=alignment) as w:
        for i, spec in enumerate(metadata):
            _add(w, f"k.{i}", spec)
        for i, (raw, type_name, shape) in enumerate(tensors):
            w.add_tensor(f"t.{i}", raw, type_name, shape)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.gguf"]

    reader = gguf.GGUFReader(path)
    assert reader.alignment == alignment
    for i, spec in enumerate(metadata):
        _check_gguf_py_field(reader.fields[f"k.{i}"], spec)
    assert [t.name for t in reader.tensors] == [f"t.{i}" for i in range(len(tensors))]
    for t, (raw, type_name, shape) in zip(reader.tensors, tensors, strict=True):
        assert t.tensor_type.name == type_name
        assert tuple(int(d) for d in reversed(t.shape)) == shape
        assert t.data.tobytes() == raw.tobytes()

    with quantlens.open_weights(path) as f:
        assert f.alignment == alignment
        meta = f.metadata
        for i, spec in enumerate(metadata):
            _check_quantlens_value(meta[f"k.{i}"], meta.types[f"k.{i}"], spec)
        for i, (raw, type_name, shape) in enumerate(tensors):
            info = f.tensor(f"t.{i}")
            assert (info.type_name, tuple(info.shape)) == (type_name, shape)
            assert f.tensor_bytes(f"t.{i}").tobytes() == raw.tobytes()


def _gguf_py_can_dequantize(qtype: quantlens.GGMLQuantizationType) -> bool:
    try:
        gguf.quants.dequantize(
            np.zeros(gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(int(qtype))][1], np.uint8),
            gguf.GGMLQuantizationType(int(qtype)),
        )
    except NotImplementedError:
        return False
    return True


ROUND_TRIP_TYPES = [t for t in quantlens.testing.decodable_types() if _gguf_py_can_dequantize(t)]


@SETTINGS
@given(t=quantized_tensors(qtypes=ROUND_TRIP_TYPES, max_rows=3, max_blocks_per_row=2))
def test_written_quantized_tensors_dequantize_as_gguf_py_does(tmp_path: Path, t: Any) -> None:
    path = tmp_path / "q.gguf"
    with GGUFWriter(path) as w:
        w.add_tensor("q", t.data, t.qtype)
    tensor = gguf.GGUFReader(path).tensors[0]
    reference = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(t.shape)
    with quantlens.open_weights(path) as f:
        ours = f.get_tensor("q")
    np.testing.assert_array_equal(
        ours.view(np.uint32), reference.astype(np.float32).view(np.uint32)
    )


def test_torch_and_numpy_sources_and_quantizing_on_write(tmp_path: Path) -> None:
    import torch

    rng = np.random.default_rng(0)
    weights = rng.standard_normal((4, 64)).astype(np.float32)
    path = tmp_path / "m.gguf"
    with GGUFWriter(path) as w:
        w.add_tensor("bf16", torch.from_numpy(weights).to(torch.bfloat16))
        w.add_tensor("f16", weights, "F16")
        w.add_tensor("q8", weights, "Q8_0")
        w.add_tensor("lazy", lambda: weights, "F32", shape=weights.shape)
    reader = gguf.GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    expected_bf16 = torch.from_numpy(weights).to(torch.bfloat16).view(torch.int16).numpy()
    assert by_name["bf16"].data.tobytes() == expected_bf16.tobytes()
    assert by_name["f16"].data.tobytes() == weights.astype(np.float16).tobytes()
    assert by_name["q8"].data.tobytes() == quantlens.quantize(weights, "Q8_0").tobytes()
    assert (
        by_name["q8"].data.tobytes()
        == gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q8_0).tobytes()
    )
    assert by_name["lazy"].data.tobytes() == weights.tobytes()


@pytest.mark.parametrize("limit", [{"split_max_tensors": 2}, {"split_max_size": 300}])
def test_split_output_opens_as_one_model_and_each_shard_in_gguf_py(
    tmp_path: Path, limit: dict[str, int]
) -> None:
    tensors = {f"blk.{i}.w": np.arange(16 * (i + 1), dtype=np.float32) for i in range(5)}
    with GGUFWriter(tmp_path / "model.gguf", "test", **limit) as w:
        w.add_metadata("test.answer", 42, "UINT32")
        for name, data in tensors.items():
            w.add_tensor(name, data)
        planned = w.output_paths
    paths = w.close()
    assert paths == planned and len(paths) > 1
    count = len(paths)
    assert [p.name for p in paths] == [
        f"model-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)
    ]
    assert sorted(tmp_path.iterdir()) == sorted(paths)

    with quantlens.open_weights(paths[-1]) as model:
        assert model.split is not None and model.split.count == count
        assert model.metadata["test.answer"] == 42
        assert model.keys() == list(tensors)
        for name, data in tensors.items():
            np.testing.assert_array_equal(model.get_tensor(name), data)

    seen = []
    for i, p in enumerate(paths):
        reader = gguf.GGUFReader(p)
        assert reader.fields["split.no"].contents() == i
        assert reader.fields["split.count"].contents() == count
        assert reader.fields["split.tensors.count"].contents() == len(tensors)
        assert ("test.answer" in reader.fields) == (i == 0)
        for t in reader.tensors:
            assert t.data.tobytes() == tensors[t.name].tobytes()
            seen.append(t.name)
    assert seen == list(tensors)


def test_failed_write_leaves_no_files_and_keeps_the_old_one(tmp_path: Path) -> None:
    dest = tmp_path / "out.gguf"
    dest.write_bytes(b"previous contents")
    with pytest.raises(ValueError, match="takes 16 bytes"), GGUFWriter(dest) as w:
        w.add_tensor_info("a", [4], "F32")
        w.add_tensor_info("b", [4], "F32")
        w.write_tensor_data("a", np.zeros(4, np.float32))
        assert len(w.temp_paths) == 1 and w.temp_paths[0].exists()
        w.write_tensor_data("b", np.zeros(5, np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gguf"]
    assert dest.read_bytes() == b"previous contents"


def test_exception_in_with_block_and_missing_data_remove_temporary_files(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    with pytest.raises(Stop), GGUFWriter(tmp_path / "x.gguf", split_max_tensors=1) as w:
        for i in range(3):
            w.add_tensor_info(f"t{i}", [8], "F32")
        w.write_tensor_data("t0", np.ones(8, np.float32))
        w.write_tensor_data("t1", np.ones(8, np.float32))
        # The first two files are complete and the third, whose header is written, waits.
        assert len(w.temp_paths) == 3 and all(p.exists() for p in w.temp_paths)
        raise Stop
    assert list(tmp_path.iterdir()) == []

    w = GGUFWriter(tmp_path / "y.gguf")
    w.add_tensor_info("t", [8], "F32")
    w.write_tensor_data("t", np.ones(4, np.float32))
    with pytest.raises(ValueError, match="has 16 of its 32 bytes"):
        w.close()
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_refused_clearly(tmp_path: Path) -> None:
    w = GGUFWriter(tmp_path / "z.gguf")
    with pytest.raises(ValueError, match="not a whole number of Q4_0 blocks"):
        w.add_tensor_info("q", [2, 31], "Q4_0")
    with pytest.raises(OverflowError):
        w.add_metadata("k", 300, "UINT8")
    with pytest.raises(OverflowError):
        w.add_metadata("k", [1, 300], "ARRAY", "UINT8")
    with pytest.raises(TypeError, match="mixed types"):
        w.add_metadata("k", [1, "a"])
    with pytest.raises(ValueError, match="written by the writer itself"):
        w.add_metadata("split.count", 2, "UINT16")
    with pytest.raises(ValueError, match="power of two"):
        GGUFWriter(tmp_path / "a.gguf", alignment=48)
    w.add_metadata("k", 1)
    with pytest.raises(ValueError, match="duplicate metadata key"):
        w.add_metadata("k", 2)
    w.abort()
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=50, deadline=None)
@given(bits=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=300))
def test_bf16_rounding_equals_gguf_py(bits: list[int]) -> None:
    from quantlens._ggml_encode import f32_to_bf16_bits

    values = np.array(bits, dtype=np.uint32).view(np.float32)
    expected = gguf.quants.quantize(values, gguf.GGMLQuantizationType.BF16)
    assert f32_to_bf16_bits(values).tobytes() == expected.tobytes()


def test_the_gil_is_released_while_writing(tmp_path: Path) -> None:
    """While one thread writes a big tensor, the main thread keeps running Python."""
    import threading
    import time

    data = np.ones(64 << 20, np.uint8)  # 64 MiB
    w = GGUFWriter(tmp_path / "big.gguf")
    w.add_tensor_info("big", [data.size], "I8")
    w.add_tensor_info("rest", [data.size], "I8")
    w.write_tensor_data("big", data)  # warm up the page cache path
    window: list[float] = []
    done = threading.Event()

    def write() -> None:
        window.append(time.perf_counter())
        w.write_tensor_data("rest", data)
        window.append(time.perf_counter())
        done.set()

    steps: list[float] = []
    worker = threading.Thread(target=write)
    worker.start()
    while not done.is_set():
        steps.append(time.perf_counter())
    worker.join()
    w.close()
    start, end = window
    margin = 0.1 * (end - start)
    inside = [t for t in steps if start + margin < t < end - margin]
    assert end - start > 0.002, "write too short to tell"
    assert len(inside) >= 50, (len(inside), end - start)
