"""quantlens against gguf-py on random files written by gguf-py's ``GGUFWriter``.

Hypothesis draws metadata of every value type (unicode strings, typed arrays, arrays of
arrays), tensors of many ggml types and shapes, an alignment and a byte order; the file
is then read by both gguf-py's ``GGUFReader`` and quantlens, and everything compared.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import (
    GGML_QUANT_SIZES,
    GGMLQuantizationType,
    GGUFEndian,
    GGUFReader,
    GGUFValueType,
    GGUFWriter,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import quantlens
from quantlens import GGUFFile, MetadataArray

VT = GGUFValueType

# Strings must be encodable as UTF-8 (no lone surrogates) for the writer.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)

SCALARS: dict[GGUFValueType, st.SearchStrategy[Any]] = {
    VT.UINT8: st.integers(0, 2**8 - 1),
    VT.INT8: st.integers(-(2**7), 2**7 - 1),
    VT.UINT16: st.integers(0, 2**16 - 1),
    VT.INT16: st.integers(-(2**15), 2**15 - 1),
    VT.UINT32: st.integers(0, 2**32 - 1),
    VT.INT32: st.integers(-(2**31), 2**31 - 1),
    VT.UINT64: st.integers(0, 2**64 - 1),
    VT.INT64: st.integers(-(2**63), 2**63 - 1),
    VT.FLOAT32: st.floats(width=32),
    VT.FLOAT64: st.floats(),
    VT.BOOL: st.booleans(),
    VT.STRING: TEXT,
}

# What ``GGUFValueType.get_type`` gives the elements of a nested (untyped) array, and how
# to draw them: nested arrays are written with their element type inferred from Python.
NESTED_LEAVES: dict[str, tuple[GGUFValueType, st.SearchStrategy[Any]]] = {
    "int": (VT.INT32, SCALARS[VT.INT32]),
    "float": (VT.FLOAT32, SCALARS[VT.FLOAT32]),
    "bool": (VT.BOOL, SCALARS[VT.BOOL]),
    "str": (VT.STRING, TEXT),
    # bytes as an element of an array of arrays become a UINT8 array (only one level down:
    # deeper, a list of bytes is a STRING array)
    "bytes": (VT.UINT8, st.binary(min_size=1, max_size=6)),
}

# gguf-py says a Q8_1 block is 40 bytes where ggml's is 36 (see test_gguf_reader.py).
TENSOR_TYPES = [t for t in GGML_QUANT_SIZES if t != GGMLQuantizationType.Q8_1]
POW2_ALIGNMENTS = [8, 16, 32, 64, 128, 256]
OTHER_ALIGNMENTS = [a for a in range(8, 257, 8) if a not in POW2_ALIGNMENTS]


@dataclass
class Entry:
    key: str
    vtype: GGUFValueType
    value: Any
    sub_type: GGUFValueType | None = None


@dataclass
class RandomTensor:
    name: str
    ggml_type: GGMLQuantizationType
    ne: list[int]
    raw: np.ndarray


@dataclass
class Model:
    entries: list[Entry]
    tensors: list[RandomTensor]
    alignment: int | None
    big_endian: bool
    extra: dict[str, Any] = field(default_factory=dict)


@st.composite
def nested_arrays(draw: st.DrawFn, depth: int) -> list[Any]:
    """A non-empty list of non-empty lists (each inner list is one GGUF array)."""
    kind = draw(
        st.sampled_from(sorted(NESTED_LEAVES) if depth == 1 else ["int", "float", "bool", "str"])
    )
    _, leaf = NESTED_LEAVES[kind]

    def level(d: int) -> st.SearchStrategy[Any]:
        if d == 0:
            return leaf if kind == "bytes" else st.lists(leaf, min_size=1, max_size=4)
        return st.lists(level(d - 1), min_size=1, max_size=3)

    return draw(st.lists(level(depth - 1), min_size=1, max_size=3))


@st.composite
def entries(draw: st.DrawFn) -> list[Entry]:
    out = []
    n = draw(st.integers(0, 8))
    for i in range(n):
        key = f"test.k{i}.{draw(TEXT)}"
        kind = draw(st.sampled_from(["scalar", "array", "nested"]))
        if kind == "scalar":
            vtype = draw(st.sampled_from(list(SCALARS)))
            out.append(Entry(key, vtype, draw(SCALARS[vtype])))
        elif kind == "array":
            elem = draw(st.sampled_from(list(SCALARS)))
            # String arrays are indexed sparsely: long ones cross several index points.
            longest = 100 if elem == VT.STRING else 6
            items = draw(st.lists(SCALARS[elem], min_size=1, max_size=longest))
            out.append(Entry(key, VT.ARRAY, items, elem))
        else:
            depth = draw(st.integers(1, 3))
            out.append(Entry(key, VT.ARRAY, draw(nested_arrays(depth)), VT.ARRAY))
    return out


@st.composite
def tensors(draw: st.DrawFn) -> list[RandomTensor]:
    out = []
    n = draw(st.integers(0, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for i in range(n):
        ty = draw(st.sampled_from(TENSOR_TYPES))
        block, type_size = GGML_QUANT_SIZES[ty]
        n_dims = draw(st.integers(1, 4))
        ne = [block * draw(st.integers(1, 3))] + [
            draw(st.integers(1, 3)) for _ in range(n_dims - 1)
        ]
        byte_shape = (*reversed(ne[1:]), ne[0] // block * type_size)
        raw = rng.integers(0, 256, size=byte_shape, dtype=np.uint8)
        out.append(RandomTensor(f"blk.{i}.{draw(TEXT)}", ty, ne, raw))
    return out


@st.composite
def models(draw: st.DrawFn, alignments: list[int | None]) -> Model:
    return Model(
        entries=draw(entries()),
        tensors=draw(tensors()),
        alignment=draw(st.sampled_from(alignments)),
        big_endian=draw(st.booleans()),
    )


def write_model(model: Model, path: Path) -> None:
    endian = GGUFEndian.BIG if model.big_endian else GGUFEndian.LITTLE
    writer = GGUFWriter(path, "testarch", endianess=endian)
    if model.alignment is not None:
        # add_custom_alignment accepts only powers of two; the format allows any multiple
        # of 8, so set the writer's padding and the key directly.
        writer.data_alignment = model.alignment
        writer.add_uint32("general.alignment", model.alignment)
    for e in model.entries:
        writer.add_key_value(e.key, e.value, e.vtype, e.sub_type)
    for t in model.tensors:
        writer.add_tensor(t.name, t.raw, raw_dtype=t.ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def same(actual: Any, expected: Any) -> bool:
    """Exact equality, NaN equal to NaN, signed zeros and bool/int told apart."""
    if isinstance(expected, float):
        if not isinstance(actual, float):
            return False
        if math.isnan(expected):
            return math.isnan(actual)
        return actual == expected and math.copysign(1, actual) == math.copysign(1, expected)
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return type(actual) is type(expected) and actual == expected


def as_written(value: Any) -> Any:
    """The Python value quantlens should give back for what was handed to the writer."""
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, list):
        return [as_written(v) for v in value]
    return value


def flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [leaf for item in value for leaf in flatten(item)]
    return [value]


def check_metadata(f: GGUFFile, reader: GGUFReader, model: Model) -> None:
    fields = {k: v for k, v in reader.fields.items() if not k.startswith("GGUF.")}
    metadata = f.metadata
    assert list(metadata) == list(fields)
    assert len(metadata) == len(fields) == len(model.entries) + 1 + (model.alignment is not None)
    for key, fld in fields.items():
        value = metadata[key]
        assert metadata.types[key] == fld.types[0].name, key
        assert metadata.offsets[key] == fld.offset, key
        if fld.types[0] == VT.ARRAY:
            assert isinstance(value, MetadataArray)
            assert value.element_type == fld.types[1].name, key
            assert len(value) == int(fld.parts[4][0]), key
            if fld.types[1] != VT.ARRAY:
                assert same(value.tolist(), fld.contents()), key
                assert same(value[:], fld.contents()), key
                if fld.types[1] != VT.STRING:
                    assert same(value.to_numpy().tolist(), fld.contents()), key
        else:
            assert same(value, fld.contents()), key
    for e in model.entries:
        value = metadata[e.key]
        if e.vtype == VT.ARRAY:
            got = value.tolist()
            assert same(got, as_written(e.value)), e.key
            if e.sub_type == VT.ARRAY:
                # gguf-py flattens nested arrays to their leaves.
                assert same(flatten(got), reader.fields[e.key].contents()), e.key
        else:
            assert same(value, e.value), e.key


def check_tensors(f: GGUFFile, reader: GGUFReader, model: Model) -> None:
    assert len(f) == len(f.tensors) == len(reader.tensors) == len(model.tensors)
    for t, rt, written in zip(f.tensors, reader.tensors, model.tensors, strict=True):
        assert t.name == rt.name == written.name
        assert t.type_id == int(rt.tensor_type) == int(written.ggml_type)
        assert t.type_name == rt.tensor_type.name
        assert list(t.ne) == [int(d) for d in rt.shape] == written.ne
        assert tuple(t.shape) == tuple(reversed(written.ne))
        assert t.n_elements == rt.n_elements
        assert t.nbytes == rt.n_bytes == written.raw.nbytes
        assert t.offset == rt.data_offset
        assert t.relative_offset == rt.data_offset - reader.data_offset
        assert t.shard == 0
        raw = f.tensor_bytes(t.name)
        assert raw.tobytes() == reader.data[rt.data_offset : rt.data_offset + rt.n_bytes].tobytes()
        assert raw.tobytes() == written.raw.tobytes()
        assert t.name in f


@settings(max_examples=150, deadline=None)
@given(models([None, *POW2_ALIGNMENTS]))
def test_matches_gguf_reader(model: Model) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        write_model(model, path)
        reader = GGUFReader(path)
        try:
            with quantlens.open_weights(path) as f:
                assert f.version == int(reader.fields["GGUF.version"].parts[0][0]) == 3
                assert f.endianness == ("big" if model.big_endian else "little")
                assert (reader.endianess == GGUFEndian.BIG) == model.big_endian
                assert f.alignment == reader.alignment == (model.alignment or 32)
                assert f.data_offset == reader.data_offset
                assert f.data_offset % f.alignment == 0
                assert f.split is None
                check_metadata(f, reader, model)
                check_tensors(f, reader, model)
        finally:
            del reader  # drop gguf-py's memmap before the directory goes


@settings(max_examples=50, deadline=None)
@given(models(OTHER_ALIGNMENTS))
def test_alignments_that_are_not_powers_of_two(model: Model) -> None:
    """The GGUF spec asks only for a multiple of 8; gguf-py's reader (like ggml) insists on
    a power of two, so here the writer's layout is the oracle: each tensor's data is padded
    to the alignment, so the data section is the file minus the padded tensors."""
    assert model.alignment is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        write_model(model, path)
        size = path.stat().st_size
        padded = [-(-t.raw.nbytes // model.alignment) * model.alignment for t in model.tensors]
        with quantlens.open_weights(path) as f:
            assert f.alignment == model.alignment
            assert f.data_offset == size - sum(padded)
            assert f.data_offset % model.alignment == 0
            relative = 0
            for t, written, step in zip(f.tensors, model.tensors, padded, strict=True):
                assert (t.name, t.type_id, list(t.ne)) == (
                    written.name,
                    int(written.ggml_type),
                    written.ne,
                )
                assert t.relative_offset == relative
                assert t.offset == f.data_offset + relative
                assert f.tensor_bytes(t.name).tobytes() == written.raw.tobytes()
                relative += step
            for e in model.entries:
                value = f.metadata[e.key]
                got = value.tolist() if e.vtype == VT.ARRAY else value
                assert same(got, as_written(e.value)), e.key
