"""Write a safetensors file one tensor at a time: the header is fixed from the declared
shapes and dtypes first, so no tensor has to stay in memory. The file is written under a
temporary name beside the destination and renamed into place when complete."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

__all__ = ["SafetensorsWriter"]

#: safetensors dtype names of numpy element types.
DTYPES = {
    "float64": ("F64", 8),
    "float32": ("F32", 4),
    "float16": ("F16", 2),
    "bfloat16": ("BF16", 2),
    "int64": ("I64", 8),
    "int32": ("I32", 4),
    "int16": ("I16", 2),
    "int8": ("I8", 1),
    "uint8": ("U8", 1),
    "bool": ("BOOL", 1),
}


class SafetensorsWriter:
    """Declare every tensor with :meth:`add_tensor_info`, then :meth:`write_tensor` each
    in the same order, then :meth:`close`. Used as a context manager, an exception removes
    the temporary file."""

    def __init__(self, path: str | os.PathLike[str], metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self._metadata = dict(metadata or {})
        self._infos: list[tuple[str, str, tuple[int, ...], int]] = []
        self._next = 0
        self._temp: Path | None = None
        self._file: BinaryIO | None = None
        self._done = False

    def add_tensor_info(self, name: str, dtype: str, shape: tuple[int, ...]) -> None:
        """Declare tensor ``name`` of numpy element type ``dtype`` and ``shape``."""
        if self._file is not None:
            raise ValueError("tensors must all be declared before the first is written")
        if dtype not in DTYPES:
            raise ValueError(f"tensor {name!r}: safetensors has no {dtype} type")
        nbytes = math.prod(shape) * DTYPES[dtype][1]
        self._infos.append((name, dtype, tuple(int(d) for d in shape), nbytes))

    def _header(self) -> bytes:
        header: dict[str, Any] = {}
        if self._metadata:
            header["__metadata__"] = self._metadata
        offset = 0
        for name, dtype, shape, nbytes in self._infos:
            entry = {"dtype": DTYPES[dtype][0], "shape": list(shape)}
            header[name] = {**entry, "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        # Pad with spaces so tensor data starts 8-byte aligned, as safetensors does.
        raw += b" " * (-len(raw) % 8)
        return len(raw).to_bytes(8, "little") + raw

    def _open(self) -> BinaryIO:
        if self._file is None:
            self._temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
            self._file = open(self._temp, "wb")  # noqa: SIM115 (closed in close/abort)
            self._file.write(self._header())
        return self._file

    def write_tensor(self, name: str, array: np.ndarray) -> None:
        """Write the next declared tensor's values."""
        if self._next >= len(self._infos):
            raise ValueError(f"tensor {name!r} was not declared")
        expected, dtype, shape, _ = self._infos[self._next]
        if name != expected:
            raise ValueError(f"tensor {expected!r} comes next, not {name!r}")
        if array.dtype.name != dtype or tuple(array.shape) != shape:
            raise ValueError(
                f"tensor {name!r} was declared {dtype} {shape}, given {array.dtype} "
                f"{tuple(array.shape)}"
            )
        data = np.ascontiguousarray(array)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        self._open().write(data.reshape(-1).view(np.uint8).data)
        self._next += 1

    def close(self) -> Path:
        """Check every tensor was written and rename the file into place."""
        if self._next != len(self._infos):
            missing = self._infos[self._next][0]
            self.abort()
            raise ValueError(f"tensor {missing!r} was declared but never written")
        file = self._open()
        file.close()
        assert self._temp is not None
        os.replace(self._temp, self.path)
        self._file = self._temp = None
        self._done = True
        return self.path

    def abort(self) -> None:
        """Stop and remove the temporary file."""
        if self._file is not None:
            self._file.close()
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
        self._file = self._temp = None
        self._done = True

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.close()
