"""Strategies for whole GGUF files: random metadata of every value type and random
quantized tensors, written by gguf-py's ``GGUFWriter``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from quantlens.decode import GGMLTypeLike
from quantlens.testing.blocks import QuantizedTensor, quantized_tensors

__all__ = ["GGUFFileSpec", "gguf_files"]

_KEY = st.from_regex(r"[a-z][a-z0-9_]{0,12}(\.[a-z0-9_]{1,12}){0,2}", fullmatch=True)
_TEXT = st.text(max_size=40)


@dataclass
class GGUFFileSpec:
    """What a generated GGUF file holds. :meth:`write` writes it with gguf-py."""

    metadata: dict[str, tuple[str, Any]]
    tensors: dict[str, QuantizedTensor]
    alignment: int = 32
    big_endian: bool = False
    arch: str = "quantlens-test"
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, path: str | os.PathLike[str]) -> None:
        import gguf

        endian = gguf.GGUFEndian.BIG if self.big_endian else gguf.GGUFEndian.LITTLE
        writer = gguf.GGUFWriter(os.fspath(path), self.arch, endianess=endian)
        if self.alignment != 32:
            writer.add_custom_alignment(self.alignment)
        for key, (type_name, value) in self.metadata.items():
            value_type = gguf.GGUFValueType[type_name]
            if value_type == gguf.GGUFValueType.ARRAY:
                writer.add_array(key, value)
            else:
                writer.add_key_value(key, value, value_type)
        for name, t in self.tensors.items():
            writer.add_tensor(name, t.data, raw_dtype=gguf.GGMLQuantizationType(int(t.qtype)))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()


def _scalar(type_name: str) -> st.SearchStrategy[Any]:
    ints = {
        "UINT8": (0, 2**8 - 1),
        "INT8": (-(2**7), 2**7 - 1),
        "UINT16": (0, 2**16 - 1),
        "INT16": (-(2**15), 2**15 - 1),
        "UINT32": (0, 2**32 - 1),
        "INT32": (-(2**31), 2**31 - 1),
        "UINT64": (0, 2**64 - 1),
        "INT64": (-(2**63), 2**63 - 1),
    }
    if type_name in ints:
        return st.integers(*ints[type_name])
    if type_name == "FLOAT32":
        return st.floats(width=32, allow_nan=False)
    if type_name == "FLOAT64":
        return st.floats(allow_nan=False)
    if type_name == "BOOL":
        return st.booleans()
    return _TEXT


_SCALAR_TYPES = [
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32",
    "UINT64", "INT64", "FLOAT32", "FLOAT64", "BOOL", "STRING",
]  # fmt: skip


@st.composite
def _metadata_value(draw: st.DrawFn) -> tuple[str, Any]:
    type_name = draw(st.sampled_from([*_SCALAR_TYPES, "ARRAY"]))
    if type_name != "ARRAY":
        return type_name, draw(_scalar(type_name))
    # gguf-py infers array element types from Python values: strings, ints, floats, bools.
    element = draw(st.sampled_from(["STRING", "INT32", "FLOAT32", "BOOL"]))
    values = draw(st.lists(_scalar(element), max_size=8))
    if element == "INT32":
        values = [int(np.int32(v)) for v in values]
    return "ARRAY", values


@st.composite
def gguf_files(
    draw: st.DrawFn,
    qtypes: Sequence[GGMLTypeLike] | None = None,
    max_tensors: int = 4,
    max_keys: int = 6,
    big_endian: bool | None = False,
) -> GGUFFileSpec:
    """A random GGUF file: metadata of every scalar type and arrays, tensors of ``qtypes``
    (default: every decodable type), alignment a multiple of 32 up to 256, and the byte
    order given (``None``: either)."""
    keys = draw(st.lists(_KEY, max_size=max_keys, unique=True))
    metadata = {f"test.{k}": draw(_metadata_value()) for k in keys}
    names = draw(st.lists(_KEY, max_size=max_tensors, unique=True))
    tensors = {name: draw(quantized_tensors(qtypes, max_rows=3)) for name in names}
    alignment = draw(st.sampled_from([32, 64, 128, 256]))
    order = draw(st.booleans()) if big_endian is None else big_endian
    return GGUFFileSpec(metadata, tensors, alignment, order)
