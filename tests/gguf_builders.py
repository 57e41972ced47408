"""Helpers that write GGUF files for the tests.

``build_gguf`` assembles a file byte by byte with ``struct``, so that a test can state
exactly what a (possibly malformed) header claims. ``write_small_model`` writes a small
valid model with gguf-py's ``GGUFWriter``, the reference writer.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFEndian, GGUFValueType, GGUFWriter

# GGUF metadata value type tags (``gguf_type`` in ggml).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = (
    range(13)
)

_SCALAR_FORMATS = {
    UINT8: "B",
    INT8: "b",
    UINT16: "H",
    INT16: "h",
    UINT32: "I",
    INT32: "i",
    FLOAT32: "f",
    BOOL: "?",
    UINT64: "Q",
    INT64: "q",
    FLOAT64: "d",
}


def pad(n: int, alignment: int) -> int:
    """``n`` rounded up to a multiple of ``alignment``."""
    return (n + alignment - 1) // alignment * alignment


def gguf_string(value: str | bytes, endian: str = "<") -> bytes:
    """A GGUF string: u64 length, then the bytes (``str`` is UTF-8 encoded)."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return struct.pack(endian + "Q", len(raw)) + raw


def scalar(vtype: int, value: Any, endian: str = "<") -> bytes:
    """The payload of a scalar value (no type tag)."""
    return struct.pack(endian + _SCALAR_FORMATS[vtype], value)


def array(elem_type: int, items: Sequence[Any], endian: str = "<") -> bytes:
    """The payload of an array value (element type tag, u64 length, elements).

    Items of a string array are ``str``/``bytes``; items of a nested array are
    ``(elem_type, items)`` pairs.
    """
    out = struct.pack(endian + "IQ", elem_type, len(items))
    for item in items:
        if elem_type == STRING:
            out += gguf_string(item, endian)
        elif elem_type == ARRAY:
            out += array(item[0], item[1], endian)
        else:
            out += scalar(elem_type, item, endian)
    return out


@dataclass
class KV:
    """A metadata pair: ``payload`` is the value's bytes after the type tag."""

    key: str | bytes
    vtype: int
    payload: bytes


def kv_u32(key: str, value: int, endian: str = "<") -> KV:
    return KV(key, UINT32, scalar(UINT32, value, endian))


def kv_str(key: str, value: str | bytes, endian: str = "<") -> KV:
    return KV(key, STRING, gguf_string(value, endian))


@dataclass
class Tensor:
    """A tensor info record: ``ne`` in ggml order, ``offset`` relative to the data."""

    name: str | bytes
    ne: Sequence[int]
    type_id: int
    offset: int
    n_dims: int | None = None


@dataclass
class GGUFLayout:
    """The bytes of a crafted file and where its data section starts."""

    data: bytes
    data_offset: int
    header_len: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def build_gguf(
    kvs: Sequence[KV] = (),
    tensors: Sequence[Tensor] = (),
    data: bytes = b"",
    *,
    alignment: int = 32,
    endian: str = "<",
    version: int = 3,
    magic: bytes = b"GGUF",
    tensor_count: int | None = None,
    kv_count: int | None = None,
) -> GGUFLayout:
    """Assemble a GGUF file. Counts default to the lengths of ``kvs`` and ``tensors``;
    the data section starts at the header's end rounded up to ``alignment`` (the value the
    reader should use, which a test passes separately from any ``general.alignment`` key).
    """
    out = bytearray(magic)
    out += struct.pack(endian + "I", version)
    out += struct.pack(
        endian + "QQ",
        len(tensors) if tensor_count is None else tensor_count,
        len(kvs) if kv_count is None else kv_count,
    )
    for kv in kvs:
        out += gguf_string(kv.key, endian)
        out += struct.pack(endian + "I", kv.vtype)
        out += kv.payload
    for t in tensors:
        out += gguf_string(t.name, endian)
        out += struct.pack(endian + "I", len(t.ne) if t.n_dims is None else t.n_dims)
        for dim in t.ne:
            out += struct.pack(endian + "Q", dim)
        out += struct.pack(endian + "IQ", t.type_id, t.offset)
    header_len = len(out)
    data_offset = pad(header_len, alignment) if alignment > 0 else header_len
    out += bytes(data_offset - header_len)
    out += data
    return GGUFLayout(bytes(out), data_offset, header_len)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- gguf-py written files ------------------------------------------------------------------

#: The tensors of ``write_small_model``: name -> (ggml type, byte shape).
SMALL_TENSORS: dict[str, tuple[GGMLQuantizationType, tuple[int, ...]]] = {
    "tok_embd.weight": (GGMLQuantizationType.Q8_0, (4, 2 * 34)),
    "norm.weight": (GGMLQuantizationType.F32, (4 * 16,)),
    "out.weight": (GGMLQuantizationType.F16, (3, 2 * 8)),
}


def small_tensor_bytes(name: str) -> np.ndarray:
    """Deterministic bytes of a ``SMALL_TENSORS`` entry."""
    _, shape = SMALL_TENSORS[name]
    n = int(np.prod(shape))
    seed = sum(name.encode())
    return ((np.arange(n, dtype=np.uint32) * 7 + seed) % 251).astype(np.uint8).reshape(shape)


def write_small_model(path: Path, *, endian: GGUFEndian = GGUFEndian.LITTLE) -> Path:
    """A small valid model: keys of several types, a string array and three tensors."""
    writer = GGUFWriter(path, "testarch", endianess=endian)
    writer.add_uint32("testarch.context_length", 2048)
    writer.add_int64("testarch.seed", -(2**40))
    writer.add_float32("testarch.eps", 1e-5)
    writer.add_bool("testarch.flag", True)
    writer.add_string("general.name", "tiny müdel")
    writer.add_key_value(
        "tokenizer.ggml.tokens",
        ["<s>", "</s>", "hé", "世界"],
        GGUFValueType.ARRAY,
        GGUFValueType.STRING,
    )
    writer.add_key_value("testarch.ids", [1, -2, 3], GGUFValueType.ARRAY, GGUFValueType.INT32)
    for name, (ty, _) in SMALL_TENSORS.items():
        writer.add_tensor(name, small_tensor_bytes(name), raw_dtype=ty)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_split_model(
    folder: Path, stem: str, tensor_names: Sequence[str], per_shard: int, *, seed: int = 0
) -> list[Path]:
    """A model split by gguf-py (``split_max_tensors``): returns the shard paths in order.

    Tensors are F32 vectors of 8 + (index % 3) * 8 values, filled from ``seed``.
    """
    writer = GGUFWriter(folder / f"{stem}.gguf", "testarch", split_max_tensors=per_shard)
    writer.add_uint32("testarch.block_count", len(tensor_names))
    writer.add_string("general.name", stem)
    rng = np.random.default_rng(seed)
    for i, name in enumerate(tensor_names):
        writer.add_tensor(name, rng.standard_normal(8 + (i % 3) * 8).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    count = -(-len(tensor_names) // per_shard)
    return [folder / f"{stem}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
