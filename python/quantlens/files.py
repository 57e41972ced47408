"""``open_weights``: one entry point for every weight file quantlens reads.

GGUF (one file or split), safetensors (one file, a sharded folder or its
``*.index.json``) and PyTorch checkpoints all open as a :class:`WeightFile` with the same
``tensors``, ``metadata``, ``tensor_bytes``, ``get_tensor`` and ``get_slice``. The format
is told from the file's first bytes, never from its name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from quantlens import _core
from quantlens._core import MetadataArray, TensorInfo, WeightTensorInfo
from quantlens._slice import TensorSlice, float_dtype, numpy_dtype, strided_copy, torch_dtype
from quantlens._weightfile import TensorDescription, WeightFile
from quantlens.decode import DTypeLike, allocate_output, writable_view
from quantlens.exceptions import UnsupportedFormatError, UnsupportedTypeError
from quantlens.ggml_types import file_type_label
from quantlens.limits import Limits

__all__ = [
    "GGUFFile",
    "Metadata",
    "MetadataArray",
    "SafetensorsFile",
    "SplitInfo",
    "TensorDescription",
    "TensorInfo",
    "TensorSlice",
    "TorchFile",
    "WeightFile",
    "WeightTensorInfo",
    "open_weights",
]

#: numpy element types of the GGUF types that are plain arrays (sliceable without decoding).
_GGUF_PLAIN = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
}


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


class GGUFFile(WeightFile[_core.GgufModel]):
    """An open GGUF model: one file, or every shard of a split model.

    Use it as a context manager, or call :meth:`close`. Arrays returned by
    :meth:`tensor_bytes` stay valid after closing: they keep the mapping alive.
    """

    format = "gguf"

    def __init__(
        self, path: str | os.PathLike[str], *, limits: Limits | None = None, mmap: bool = True
    ) -> None:
        self.path = Path(path)
        self._model: _core.GgufModel | None = _core.GgufModel(self.path, limits=limits, mmap=mmap)
        self._metadata: Metadata | None = None
        self._tensors: list[TensorInfo] | None = None
        self._by_name: dict[str, TensorInfo] | None = None

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
        info: TensorInfo | None = self._by_name.get(name)
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

    def close(self) -> None:
        super().close()
        self._tensors = None
        self._metadata = None

    def get_slice(self, name: str) -> TensorSlice:
        """Unquantized tensor ``name`` (F32, F16, BF16, F64, I8…I64) to index lazily;
        quantized tensors decode whole, with :meth:`get_tensor`."""
        info = self.tensor(name)
        element = _GGUF_PLAIN.get(info.type_name)
        if element is None:
            raise UnsupportedTypeError(
                f"{self.path}: tensor {name!r} is {info.type_name}, which is block-quantized: "
                "get_slice reads plain tensors; use get_tensor",
                path=self.path,
                tensor=name,
            )
        shape = info.shape
        strides = [int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(len(shape))]
        # Big-endian files hold byte-swapped elements: read them as native, then swap.
        fix = (lambda a: a.byteswap()) if self.endianness == "big" else None
        raw = self._open.tensor_bytes
        return TensorSlice(name, numpy_dtype(element), shape, strides, lambda: raw(name), fix)

    def __len__(self) -> int:
        return len(self._open)


class _ModelFile(WeightFile[_core.WeightModel]):
    """Safetensors and PyTorch files, both read through ``_core.WeightModel``."""

    _formats: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        limits: Limits | None = None,
        mmap: bool = True,
        _model: Any = None,
    ) -> None:
        self.path = Path(path)
        model: _core.WeightModel = (
            _model if _model is not None else _core.WeightModel(self.path, limits=limits, mmap=mmap)
        )
        self._mmap = mmap
        if model.format not in self._formats:
            raise UnsupportedFormatError(
                f"{self.path}: this is {model.format}, not {self.format}; "
                "quantlens.open_weights opens either",
                path=self.path,
            )
        self._model: _core.WeightModel | None = model
        self._tensors: list[WeightTensorInfo] | None = None
        self._by_name = None
        self._storages: dict[int, Any] = {}

    @property
    def metadata(self) -> dict[str, str]:
        """String metadata: safetensors ``__metadata__`` (and a sharded index's
        ``metadata``), first occurrence of each key."""
        return dict(self._open.metadata)

    @property
    def tensors(self) -> list[WeightTensorInfo]:
        """Every tensor, in file order."""
        if self._tensors is None:
            self._tensors = self._open.tensor_infos()
        return self._tensors

    def tensor(self, name: str) -> WeightTensorInfo:
        """The description of tensor ``name``."""
        info: WeightTensorInfo = super().tensor(name)
        return info

    def tensor_bytes(self, name: str) -> np.ndarray:
        """The bytes tensor ``name`` spans, as a read-only zero-copy ``uint8`` array over the
        mapped file."""
        return self._open.tensor_bytes(name)

    def get_tensor(self, name: str, dtype: DTypeLike = None) -> Any:
        """Tensor ``name`` as a new, writable numpy array of its own element type (bfloat16
        and float8 as ``ml_dtypes`` types), or converted to float ``dtype``.

        A torch ``dtype`` gives a CPU torch tensor. In its own dtype it is zero-copy, as
        with ``safetensors``: it views a private copy-on-write map of the file, so in-place
        changes never reach the file but are seen by later calls on this open file.
        """
        info = self.tensor(name)
        if dtype is not None and _is_torch_dtype(dtype):
            if not self._mmap:
                return self._torch_copy(info, dtype)
            return self._torch_tensor(info, dtype)
        array = self._read(info)
        return array if dtype is None else array.astype(float_dtype(dtype))

    def _read(self, info: WeightTensorInfo) -> np.ndarray:
        element = numpy_dtype(_numpy_name(info))
        if not info.contiguous:
            return strided_copy(self.tensor_bytes(info.name), element, info.shape, info.strides)
        out = np.empty(info.shape, element)
        self._open.read_into(info.name, out.reshape(-1).view(np.uint8))
        return out

    def _torch_tensor(self, info: WeightTensorInfo, dtype: Any) -> Any:
        """A zero-copy tensor over a private (copy-on-write) map of the file that torch
        makes itself: torch has no read-only tensors, so it must never see our read-only
        map; writes to this one stay in this process and never reach the file."""
        import torch

        own = torch_dtype(_numpy_name(info))
        # Refuses, with a typed error, a tensor past the file's current end.
        self._open.tensor_bytes(info.name)
        window = self._storage(info.file)[info.offset : info.offset + info.nbytes]
        tensor = torch.empty(0, dtype=own).set_(window, 0, info.shape, info.strides)
        return tensor if dtype == own else tensor.to(dtype)

    def _torch_copy(self, info: WeightTensorInfo, dtype: Any) -> Any:
        """A torch tensor over a fresh copy of the bytes, for files opened with
        ``mmap=False`` (torch would map the file itself otherwise)."""
        import torch

        own = torch_dtype(_numpy_name(info))
        flat = np.ascontiguousarray(self._read(info)).reshape(-1).view(np.uint8)
        tensor = torch.from_numpy(flat).view(own).reshape(info.shape)
        return tensor if dtype == own else tensor.to(dtype)

    def _storage(self, file: int) -> Any:
        """torch's private map of file ``file``, made once per open file."""
        storage = self._storages.get(file)
        if storage is None:
            import torch

            path, size = self._open.paths[file], self._open.file_sizes[file]
            storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
            self._storages[file] = storage
        return storage

    def get_slice(self, name: str) -> TensorSlice:
        info = self.tensor(name)
        element = numpy_dtype(_numpy_name(info))
        raw = self._open.tensor_bytes
        return TensorSlice(name, element, info.shape, info.strides, lambda: raw(name))

    def close(self) -> None:
        super().close()
        self._tensors = None
        self._storages = {}


class SafetensorsFile(_ModelFile):
    """An open safetensors model: one file, or the shards of a sharded one (opened from
    their folder or their ``model.safetensors.index.json``)."""

    format = "safetensors"
    _formats = ("safetensors",)


class TorchFile(_ModelFile):
    """An open PyTorch checkpoint written by ``torch.save``, read without running its
    pickle. ``checkpoint_format`` says which container: ``pytorch-zip`` or
    ``pytorch-legacy``."""

    format = "pytorch"
    _formats = ("pytorch-zip", "pytorch-legacy")

    @property
    def checkpoint_format(self) -> str:
        return self._open.format


def _numpy_name(info: WeightTensorInfo) -> str:
    name = info.numpy_dtype
    if name is None:
        raise UnsupportedTypeError(f"tensor {info.name!r} has no numpy type", tensor=info.name)
    return name


def _is_torch_dtype(dtype: Any) -> bool:
    return type(dtype).__module__.split(".")[0] == "torch"


def open_weights(
    path: str | os.PathLike[str], *, limits: Limits | None = None, mmap: bool = True
) -> WeightFile[Any]:
    """Open a weight file or model, telling its format from its first bytes.

    ``path`` may be a GGUF file (a split model opens whole from any shard), a safetensors
    file, a sharded model's folder or ``*.index.json``, or a PyTorch checkpoint. A file that
    is none of these (a Git LFS pointer, an HTML error page, an empty or cut-off download)
    raises a :class:`~quantlens.exceptions.QuantlensError` saying what it is instead.

    ``limits`` caps what the file may claim (:class:`~quantlens.Limits`; the defaults open
    every real model). ``mmap=False`` reads the files into memory instead of mapping them,
    so that another process cutting or rewriting a file later cannot crash this one; it
    costs memory the size of the files. Mapped files are checked against their current
    size before a tensor is read.
    """
    target = Path(path)
    if not target.is_dir():
        kind, _ = _core.sniff_file(target)
        if kind == "gguf":
            return GGUFFile(target, limits=limits, mmap=mmap)
    model = _core.WeightModel(target, limits=limits, mmap=mmap)
    cls = SafetensorsFile if model.format == "safetensors" else TorchFile
    return cls(target, mmap=mmap, _model=model)
