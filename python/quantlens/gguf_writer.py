"""Write GGUF files: metadata of every value type, tensors from numpy arrays, torch
tensors or already-quantized bytes, optionally split like llama.cpp's ``gguf-split``.

Two ways to use :class:`GGUFWriter`:

* simple: ``add_metadata`` / ``add_tensor`` for everything, then ``write()`` (or leave the
  ``with`` block), as with gguf-py's writer;
* streaming (a model that does not fit in memory): declare every tensor with
  ``add_tensor_info``, then give each tensor's bytes in the same order with
  ``write_tensor_data`` (in as many pieces as you like), then ``close()``.

Files are written under temporary names beside the destination and renamed into place
only when complete; an error (or leaving the ``with`` block by an exception) removes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from quantlens import _core
from quantlens._ggml_encode import as_numpy, encode, ggml_type_of
from quantlens.decode import GGMLTypeLike, to_ggml_type
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

__all__ = ["GGUFValueType", "GGUFWriter", "TensorSource"]


class GGUFValueType(IntEnum):
    """A GGUF metadata value type, numbered and named as in gguf-py."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


V = GGUFValueType

_NUMPY_OF: dict[GGUFValueType, str] = {
    V.UINT8: "<u1",
    V.INT8: "<i1",
    V.UINT16: "<u2",
    V.INT16: "<i2",
    V.UINT32: "<u4",
    V.INT32: "<i4",
    V.UINT64: "<u8",
    V.INT64: "<i8",
    V.FLOAT32: "<f4",
    V.FLOAT64: "<f8",
    V.BOOL: "u1",
}
_OF_NUMPY = {
    "uint8": V.UINT8,
    "int8": V.INT8,
    "uint16": V.UINT16,
    "int16": V.INT16,
    "uint32": V.UINT32,
    "int32": V.INT32,
    "uint64": V.UINT64,
    "int64": V.INT64,
    "float32": V.FLOAT32,
    "float64": V.FLOAT64,
    "bool": V.BOOL,
}

#: What :meth:`GGUFWriter.add_tensor` takes: an array or tensor, raw bytes, or a callable
#: returning one (called only when the data is written).
TensorSource = Any

ValueTypeLike = GGUFValueType | int | str


def _value_type(value_type: ValueTypeLike) -> GGUFValueType:
    if isinstance(value_type, str):
        return GGUFValueType[value_type.upper()]
    return GGUFValueType(int(value_type))


def infer_value_type(value: Any) -> GGUFValueType:
    """The type gguf-py would give ``value`` (``int`` → INT32 when it fits, INT64 or
    UINT64 beyond; ``float`` → FLOAT32), numpy scalars keeping their own type."""
    if isinstance(value, (bool, np.bool_)):
        return V.BOOL
    if isinstance(value, np.generic):
        found = _OF_NUMPY.get(value.dtype.name)
        if found is None:
            raise TypeError(f"no GGUF type for numpy {value.dtype}")
        return found
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return V.INT32
        return V.INT64 if -(2**63) <= value < 2**63 else V.UINT64
    if isinstance(value, float):
        return V.FLOAT32
    if isinstance(value, (str, bytes)):
        return V.STRING
    if isinstance(value, (list, tuple, np.ndarray)):
        return V.ARRAY
    raise TypeError(f"no GGUF type for {type(value).__name__} value {value!r}")


def _infer_element_type(items: Any) -> GGUFValueType:
    if isinstance(items, np.ndarray):
        found = _OF_NUMPY.get(items.dtype.name)
        if found is not None:
            return found
        if items.dtype.kind in "US":
            return V.STRING
        raise TypeError(f"no GGUF array type for numpy {items.dtype}")
    if len(items) == 0:
        # gguf-py writes empty arrays as arrays of UINT8 too.
        return V.UINT8
    kinds = {infer_value_type(v) for v in items}
    if kinds <= {V.INT32, V.INT64, V.UINT64}:
        return max(kinds, key=[V.INT32, V.INT64, V.UINT64].index)
    if len(kinds) != 1:
        names = sorted(k.name for k in kinds)
        raise TypeError(f"array elements of mixed types {names}; give element_type")
    return kinds.pop()


def _payload(value: Any, value_type: GGUFValueType, element_type: GGUFValueType | None) -> Any:
    """``(type_id, payload)`` as ``_core.GgufWriter.add_metadata`` takes it."""
    if value_type == V.ARRAY:
        return (int(V.ARRAY), _array_payload(value, element_type))
    if value_type == V.STRING:
        if not isinstance(value, (str, bytes)):
            raise TypeError(f"a STRING value must be str or bytes, not {type(value).__name__}")
        return (int(V.STRING), _string(value))
    if value_type in (V.FLOAT32, V.FLOAT64):
        return (int(value_type), float(value))
    if value_type == V.BOOL:
        return (int(V.BOOL), bool(value))
    if isinstance(value, (float, np.floating)) and not float(value).is_integer():
        raise TypeError(f"{value!r} is not an integer, so it cannot be {value_type.name}")
    return (int(value_type), int(value))


def _string(value: str | bytes) -> str | bytes:
    # Strings read with surrogateescape (invalid UTF-8 in a file) go back as their bytes.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape")
    return value


def _array_payload(items: Any, element_type: GGUFValueType | None) -> tuple[int, Any]:
    if hasattr(items, "tolist") and not isinstance(items, np.ndarray):
        items = items.tolist()  # a MetadataArray read from a file, or a torch tensor
    if not isinstance(items, (list, tuple, np.ndarray)):
        raise TypeError(f"an ARRAY value must be a sequence, not {type(items).__name__}")
    elem = element_type if element_type is not None else _infer_element_type(items)
    if elem == V.STRING:
        return (int(elem), [_string(s if isinstance(s, bytes) else str(s)) for s in items])
    if elem == V.ARRAY:
        return (int(elem), [_array_payload(a, None) for a in items])
    dtype = np.dtype(_NUMPY_OF[elem])
    if isinstance(items, np.ndarray):
        source = items.reshape(-1)
    else:
        source = np.array(list(items), dtype=object if elem != V.BOOL else bool)
    if elem not in (V.FLOAT32, V.FLOAT64, V.BOOL):
        _check_int_range(source, dtype)
    packed = np.ascontiguousarray(source.astype(dtype))
    return (int(elem), packed.tobytes())


def _check_int_range(values: np.ndarray, dtype: np.dtype[Any]) -> None:
    info = np.iinfo(dtype)
    for v in values.tolist():
        if isinstance(v, float) and not v.is_integer():
            raise TypeError(f"{v!r} is not an integer")
        if not info.min <= int(v) <= info.max:
            raise OverflowError(f"{v} does not fit in {dtype.name}")


class GGUFWriter:
    """A GGUF file being written (see the module docs).

    Args:
        path: the output file; split output goes to ``STEM-0000i-of-0000N.gguf`` beside it.
        arch: if given, written as ``general.architecture`` first.
        alignment: tensor data alignment (a power of two, at least 8).
        split_max_size: most bytes of tensor data per file (``gguf-split --split-max-size``).
        split_max_tensors: most tensors per file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        arch: str | None = None,
        *,
        alignment: int = 32,
        split_max_size: int | None = None,
        split_max_tensors: int | None = None,
    ) -> None:
        self.path = Path(path)
        self._native: _core.GgufWriter | None = _core.GgufWriter(
            self.path, alignment, split_max_size, split_max_tensors
        )
        self._pending: list[tuple[str, TensorSource, GGMLQuantizationType]] = []
        self._paths: list[Path] | None = None
        if arch is not None:
            self.add_metadata("general.architecture", arch)

    @property
    def _open(self) -> _core.GgufWriter:
        if self._native is None:
            raise ValueError(f"{self.path}: the writer is closed")
        return self._native

    # metadata

    def add_metadata(
        self,
        key: str,
        value: Any,
        value_type: ValueTypeLike | None = None,
        element_type: ValueTypeLike | None = None,
    ) -> None:
        """Add ``key``; its type is ``value_type`` or inferred from ``value`` (as gguf-py
        does). Arrays may be lists, tuples or numpy arrays; ``element_type`` fixes their
        element type (nested lists make arrays of arrays)."""
        kind = _value_type(value_type) if value_type is not None else infer_value_type(value)
        elem = _value_type(element_type) if element_type is not None else None
        self._open.add_metadata(key, _payload(value, kind, elem))

    add_key_value = add_metadata

    def add_array(self, key: str, values: Any, element_type: ValueTypeLike | None = None) -> None:
        """Add an array value."""
        self.add_metadata(key, values, V.ARRAY, element_type)

    def add_string(self, key: str, value: str) -> None:
        """Add a string value."""
        self.add_metadata(key, value, V.STRING)

    def add_uint32(self, key: str, value: int) -> None:
        """Add a UINT32 value."""
        self.add_metadata(key, value, V.UINT32)

    def add_float32(self, key: str, value: float) -> None:
        """Add a FLOAT32 value."""
        self.add_metadata(key, value, V.FLOAT32)

    # tensors

    def add_tensor_info(self, name: str, shape: Sequence[int], ggml_type: GGMLTypeLike) -> None:
        """Declare tensor ``name`` of row-major weight ``shape`` and ``ggml_type``; its data
        comes later through :meth:`write_tensor_data`, in declaration order."""
        qtype = to_ggml_type(ggml_type)
        self._open.add_tensor_info(name, [int(d) for d in shape], int(qtype))

    def write_tensor_data(self, name: str, data: Any) -> None:
        """Append bytes of tensor ``name`` (the next one declared without all its data):
        a ``uint8`` array or buffer of encoded bytes, or any array of the tensor's plain
        type (F32, F16, BF16, F64, I8…I64), written as its bytes."""
        raw = as_numpy(data)
        raw = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
        self._open.write_tensor_data(name, raw)

    def add_tensor(
        self,
        name: str,
        data: TensorSource,
        ggml_type: GGMLTypeLike | None = None,
        shape: Sequence[int] | None = None,
    ) -> None:
        """Add tensor ``name``, written by :meth:`write`.

        ``data`` is a numpy array or torch tensor of weights (converted or quantized to
        ``ggml_type``, by default its own plain type), ``uint8`` bytes of ``ggml_type``
        (rows of blocks as gguf-py stores them, or any layout with ``shape``), or a callable
        returning either (so the data need not be in memory until written; ``shape`` and
        ``ggml_type`` are then required).
        """
        if callable(data):
            if shape is None or ggml_type is None:
                raise ValueError("a callable tensor source needs shape and ggml_type")
            qtype = to_ggml_type(ggml_type)
            self.add_tensor_info(name, shape, qtype)
            self._pending.append((name, data, qtype))
            return
        array = as_numpy(data)
        qtype, weights = _tensor_layout(name, array, ggml_type, shape)
        self.add_tensor_info(name, weights, qtype)
        self._pending.append((name, array, qtype))

    def write(self, progress: Callable[[int], None] | None = None) -> list[Path]:
        """Write every tensor added with :meth:`add_tensor` and finish the files.
        ``progress`` is called with each tensor's byte count. Returns the paths written."""
        for name, source, qtype in self._pending:
            data = source() if callable(source) else source
            payload = _encode_for(as_numpy(data), qtype)
            self.write_tensor_data(name, payload)
            if progress is not None:
                progress(payload.size)
        self._pending = []
        return self.close()

    def close(self) -> list[Path]:
        """Finish: check every declared tensor has its data and rename the files into
        place. Returns their paths; closing again returns them again."""
        if self._paths is not None:
            return self._paths
        native = self._open
        try:
            paths = native.finish()
        finally:
            self._native = None
        self._paths = [Path(p) for p in paths]
        return self._paths

    def abort(self) -> None:
        """Stop and remove every file written so far."""
        if self._native is not None:
            self._native.abort()
            self._native = None

    @property
    def output_paths(self) -> list[Path]:
        """The files the output will be (or was), as declared so far."""
        if self._paths is not None:
            return self._paths
        return [Path(p) for p in self._open.output_paths]

    @property
    def output_sizes(self) -> list[int]:
        """The size of each output file, as declared so far."""
        return self._open.output_sizes

    @property
    def temp_paths(self) -> list[Path]:
        """The temporary files being written now."""
        return [] if self._native is None else [Path(p) for p in self._native.temp_paths]

    def __enter__(self) -> GGUFWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._native is not None:
            if self._pending:
                self.write()
            else:
                self.close()


def _tensor_layout(
    name: str, array: np.ndarray, ggml_type: GGMLTypeLike | None, shape: Sequence[int] | None
) -> tuple[GGMLQuantizationType, tuple[int, ...]]:
    """The ggml type and row-major weight shape of tensor data given to ``add_tensor``."""
    own = ggml_type_of(array)
    qtype = to_ggml_type(ggml_type) if ggml_type is not None else own
    if qtype is None:
        raise TypeError(f"tensor {name!r}: no ggml type for {array.dtype}; give ggml_type")
    if shape is not None:
        return qtype, tuple(int(d) for d in shape)
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if array.dtype == np.uint8 and (block_size > 1 or qtype not in (own, None)):
        # Bytes of a block type, rows of blocks as gguf-py stores them.
        if array.ndim == 0 or array.shape[-1] % type_size:
            raise ValueError(
                f"tensor {name!r}: rows of {array.shape[-1] if array.ndim else 1} bytes are "
                f"not whole {qtype.name} blocks of {type_size} bytes; give shape"
            )
        return qtype, (*array.shape[:-1], array.shape[-1] // type_size * block_size)
    return qtype, tuple(int(d) for d in array.shape) or (1,)


def _encode_for(array: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """Bytes of ``qtype`` for ``array``: itself when it already holds them."""
    if array.dtype == np.uint8 and (ggml_type_of(array) != qtype):
        return np.ascontiguousarray(array).reshape(-1)
    return encode(array, qtype)
