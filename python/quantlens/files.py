"""``open_weights``: one entry point for every weight file quantlens reads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from quantlens import _core
from quantlens._core import MetadataArray, TensorInfo
from quantlens.decode import DTypeLike, allocate_output, writable_view
from quantlens.exceptions import UnsupportedFormatError
from quantlens.ggml_types import file_type_label

__all__ = ["GGUFFile", "Metadata", "MetadataArray", "SplitInfo", "TensorInfo", "open_weights"]


class Metadata(dict[str, Any]):
    """A file's metadata: key -> Python value, in file order.

    Arrays are :class:`MetadataArray` sequences read from the file on demand. ``types``
    gives each key's GGUF type name (``UINT32``, ``STRING``, ``ARRAY``, ...) and ``offsets``
    where the pair starts in the file.
    """

    types: dict[str, str]
    offsets: dict[str, int]


@dataclass(frozen=True)
class SplitInfo:
    """How a split GGUF model is spread over files."""

    count: int
    tensors_count: int | None
    paths: tuple[Path, ...]


class GGUFFile:
    """An open GGUF model: one file, or every shard of a split model.

    Use it as a context manager, or call :meth:`close`. Arrays returned by
    :meth:`tensor_bytes` stay valid after closing: they keep the mapping alive.
    """

    format = "gguf"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._model: _core.GgufModel | None = _core.GgufModel(self.path)
        self._metadata: Metadata | None = None
        self._tensors: list[TensorInfo] | None = None
        self._by_name: dict[str, TensorInfo] | None = None

    @property
    def _open(self) -> _core.GgufModel:
        if self._model is None:
            raise ValueError(f"{self.path}: file is closed")
        return self._model

    @property
    def version(self) -> int:
        """GGUF version (2 or 3)."""
        return self._open.version

    @property
    def endianness(self) -> str:
        """Byte order of the file: ``"little"`` or ``"big"``."""
        return self._open.endianness

    @property
    def alignment(self) -> int:
        """Alignment of tensor data in bytes (``general.alignment``, default 32)."""
        return self._open.alignment

    @property
    def data_offset(self) -> int:
        """Absolute offset of the (first) file's tensor data section."""
        return self._open.data_offset

    @property
    def metadata(self) -> Metadata:
        """Every metadata key and value of the model (from its first file)."""
        if self._metadata is None:
            entries = self._open.metadata_entries()
            metadata = Metadata((key, value) for key, _, value, _ in entries)
            metadata.types = {key: type_name for key, type_name, _, _ in entries}
            metadata.offsets = {key: offset for key, _, _, offset in entries}
            self._metadata = metadata
        return self._metadata

    @property
    def tensors(self) -> list[TensorInfo]:
        """Every tensor in file order (shard by shard for split models)."""
        if self._tensors is None:
            self._tensors = self._open.tensor_infos()
        return self._tensors

    def tensor(self, name: str) -> TensorInfo:
        """The description of tensor ``name``."""
        if self._by_name is None:
            self._by_name = {t.name: t for t in self.tensors}
        info = self._by_name.get(name)
        if info is None:
            # The core raises the typed error, naming the file.
            self._open.tensor_bytes(name)
            raise AssertionError("unreachable: tensor_bytes raises for a missing tensor")
        return info

    def tensor_bytes(self, name: str) -> np.ndarray:
        """The tensor's raw bytes as a read-only ``uint8`` array over the mapped file."""
        return self._open.tensor_bytes(name)

    def get_tensor(
        self,
        name: str,
        dtype: DTypeLike = None,
        out: Any = None,
        threads: int | None = None,
    ) -> Any:
        """Tensor ``name`` decoded to ``dtype`` (default float32) in its row-major shape.

        ``dtype`` may be ``float32``, ``float16`` or ``bfloat16`` (a name, numpy dtype, or
        torch dtype, which returns a torch tensor). ``out`` is an optional C-contiguous
        numpy array or CPU torch tensor with one element per weight to write into.
        """
        info = self.tensor(name)
        out, name_of_dtype = allocate_output(info.shape, dtype, out)
        view = writable_view(out, name_of_dtype, info.n_elements)
        self._open.dequantize_tensor(name, view, name_of_dtype, threads)
        return out

    @property
    def file_type(self) -> str | None:
        """The llama.cpp label of ``general.file_type`` (e.g. ``"Q4_K_M"``), if stated."""
        value = self.metadata.get("general.file_type")
        # Any integer type may be stored; only a u32 (never a bool) can name a file type.
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
            return None
        return file_type_label(value)

    @property
    def split(self) -> SplitInfo | None:
        """Layout of a split model, or ``None`` for a single file."""
        split = self._open.split
        if split is None:
            return None
        return SplitInfo(split[0], split[1], tuple(Path(p) for p in self._open.paths))

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file of the model, in shard order."""
        return tuple(Path(p) for p in self._open.paths)

    @property
    def file_size(self) -> int:
        """Bytes in all files of the model."""
        return sum(self._open.file_sizes)

    @property
    def closed(self) -> bool:
        return self._model is None

    def close(self) -> None:
        """Release the mapping (arrays already handed out keep their own reference)."""
        self._model = None
        self._tensors = None
        self._by_name = None
        self._metadata = None

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[str]:
        return (t.name for t in self.tensors)

    def __contains__(self, name: object) -> bool:
        if self._by_name is None:
            self._by_name = {t.name: t for t in self.tensors}
        return name in self._by_name

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} tensors"
        return f"GGUFFile({str(self.path)!r}, {state})"


def open_weights(path: str | os.PathLike[str]) -> GGUFFile:
    """Open a weight file, telling its format from its first bytes.

    Raises :class:`~quantlens.exceptions.UnsupportedFormatError` for a file that is not a
    weight format quantlens reads, saying what it is instead.
    """
    kind, description = _core.sniff_file(path)
    if kind == "gguf":
        return GGUFFile(path)
    raise UnsupportedFormatError(
        f"{os.fspath(path)}: {description}; quantlens opens GGUF files", path=path
    )
