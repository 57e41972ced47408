"""Typed surface of the ``quantlens._core`` extension module (checked by mypy.stubtest)."""

import os
from pathlib import Path
from typing import Any, Protocol, final, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "GgufModel",
    "GgufWriter",
    "MappedBytes",
    "MetadataArray",
    "TensorInfo",
    "WeightModel",
    "WeightTensorInfo",
    "__version__",
    "accepts_imatrix",
    "can_dequantize",
    "can_quantize",
    "default_limits",
    "default_threads",
    "dequantize",
    "encoding_order",
    "file_type_encoding",
    "file_type_label",
    "ggml_types",
    "kernel_isa",
    "quantize",
    "rank_encodings",
    "scale_fields",
    "sniff_file",
]

__version__: str

def ggml_types() -> list[tuple[int, str, int, int]]:
    """Every known ggml type: ``(id, name, block_size, type_size)``."""

def file_type_label(file_type: int) -> str | None:
    """The llama.cpp label of a ``general.file_type`` value, or ``None``."""

def sniff_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """What kind of file ``path`` is, from its first bytes: ``(name, description)``."""

def dequantize(
    data: npt.NDArray[np.uint8],
    type_id: int,
    out: npt.NDArray[Any],
    dtype: str,
    threads: int | None = None,
) -> None:
    """Decode whole blocks of ggml type ``type_id`` into ``out`` (C-contiguous; float32, or
    uint16 bits for float16/bfloat16), with the GIL released."""

def rank_encodings(
    tensors: list[tuple[str, int, int]], weighting: str, file_type: int | None = None
) -> list[tuple[str, int, int]]:
    """Rank the encodings of ``tensors`` (``(type name, elements, bytes)`` each), heaviest
    first by ``weighting`` (``"bytes"`` or ``"elements"``), as ``(encoding, tensors, weight)``.
    A GGUF ``file_type`` goes first when the tensors hold it; ties keep the declaration order
    of ``SupportedEncoding``; types that are not encodings are left out."""

def encoding_order() -> list[str]:
    """Every encoding in the order that breaks ties, by name."""

def file_type_encoding(file_type: int) -> str | None:
    """The encoding a GGUF ``general.file_type`` says most tensors hold (``15`` → ``Q4_K``)."""

def kernel_isa() -> str:
    """The instruction set of the kernels in use."""

def can_dequantize(type_id: int) -> bool:
    """Whether quantlens can decode ggml type ``type_id``."""

def scale_fields(type_id: int) -> list[tuple[str, int]]:
    """Where a block of ggml type ``type_id`` keeps its scales: ``(encoding, offset)``."""

def default_limits() -> list[tuple[str, int]]:
    """The default caps of ``quantlens.Limits`` as ``(field, value)`` pairs."""

class _LimitsLike(Protocol):
    """What the open functions read from ``limits=``: the ``quantlens.Limits`` fields."""

    @property
    def max_header_bytes(self) -> int: ...
    @property
    def max_tensors(self) -> int: ...
    @property
    def max_string_len(self) -> int: ...
    @property
    def max_array_len(self) -> int: ...
    @property
    def max_depth(self) -> int: ...

def default_threads() -> int:
    """The thread count used when none is given."""

def quantize(
    data: npt.NDArray[Any],
    dtype: str,
    type_id: int,
    n_per_row: int,
    imatrix: npt.NDArray[np.float32] | None = None,
    threads: int | None = None,
) -> npt.NDArray[np.uint8]:
    """Quantize rows of ``n_per_row`` weights (C-contiguous; float32, or uint16 bits for
    float16/bfloat16) to ggml type ``type_id`` into a new flat uint8 array, with the GIL
    released."""

def can_quantize(type_id: int) -> bool:
    """Whether quantlens can quantize to ggml type ``type_id``."""

def accepts_imatrix(type_id: int) -> bool:
    """Whether an importance matrix changes how ggml type ``type_id`` is quantized."""

@final
class GgufModel:
    """An open GGUF model (one file, or every shard of a split model)."""

    def __new__(
        cls, path: str | os.PathLike[str], *, limits: _LimitsLike | None = None, mmap: bool = True
    ) -> GgufModel: ...
    @property
    def version(self) -> int: ...
    @property
    def endianness(self) -> str: ...
    @property
    def alignment(self) -> int: ...
    @property
    def data_offset(self) -> int: ...
    @property
    def paths(self) -> list[Path]: ...
    @property
    def file_sizes(self) -> list[int]: ...
    @property
    def split(self) -> tuple[int, int | None] | None: ...
    def metadata_entries(self) -> list[tuple[str, str, Any, int]]: ...
    def tensor_infos(self) -> list[TensorInfo]: ...
    def tensor_bytes(self, name: str) -> npt.NDArray[np.uint8]: ...
    def dequantize_tensor(
        self, name: str, out: npt.NDArray[Any], dtype: str, threads: int | None = None
    ) -> None: ...
    def __len__(self) -> int: ...

@final
class TensorInfo:
    """One tensor's description."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def type_id(self) -> int: ...
    @property
    def type_name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def ne(self) -> list[int]: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def n_elements(self) -> int: ...
    @property
    def nbytes(self) -> int | None: ...
    @property
    def offset(self) -> int: ...
    @property
    def relative_offset(self) -> int: ...
    @property
    def shard(self) -> int: ...

@final
class MetadataArray:
    """A GGUF metadata array read from the mapped file on demand."""

    @property
    def element_type(self) -> str: ...
    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, key: int, /) -> Any: ...
    @overload
    def __getitem__(self, key: slice, /) -> list[Any]: ...
    def tolist(self) -> list[Any]: ...
    def to_numpy(self) -> npt.NDArray[Any]: ...

@final
class MappedBytes:
    """Keeps a mapped file alive while numpy arrays view it."""

@final
class WeightModel:
    """An open safetensors model (one file or sharded) or PyTorch checkpoint."""

    def __new__(
        cls, path: str | os.PathLike[str], *, limits: _LimitsLike | None = None, mmap: bool = True
    ) -> WeightModel: ...
    @property
    def format(self) -> str: ...
    @property
    def paths(self) -> list[Path]: ...
    @property
    def file_sizes(self) -> list[int]: ...
    @property
    def metadata(self) -> list[tuple[str, str]]: ...
    def tensor_infos(self) -> list[WeightTensorInfo]: ...
    def tensor_info(self, name: str) -> WeightTensorInfo: ...
    def tensor_bytes(self, name: str) -> npt.NDArray[np.uint8]: ...
    def read_into(
        self, name: str, out: npt.NDArray[np.uint8], threads: int | None = None
    ) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: str, /) -> bool: ...

@final
class WeightTensorInfo:
    """One tensor of a safetensors model or PyTorch checkpoint."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def numpy_dtype(self) -> str | None: ...
    @property
    def itemsize(self) -> int | None: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def strides(self) -> tuple[int, ...]: ...
    @property
    def contiguous(self) -> bool: ...
    @property
    def n_elements(self) -> int: ...
    @property
    def file(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def nbytes(self) -> int: ...

@final
class GgufWriter:
    """A GGUF file (or split set of files) being written; see ``quantlens.gguf_writer``.

    Metadata values are ``(type_id, payload)``: scalars as Python numbers, strings as
    ``str`` or ``bytes``, arrays as ``(element_type_id, items)`` with items packed
    little-endian ``bytes`` for fixed-size elements, a list of ``str``/``bytes`` for
    strings, or a list of arrays.
    """

    def __new__(
        cls,
        path: str | os.PathLike[str],
        alignment: int = 32,
        split_max_bytes: int | None = None,
        split_max_tensors: int | None = None,
    ) -> GgufWriter: ...
    def add_metadata(self, key: str, value: tuple[int, Any]) -> None: ...
    def add_tensor_info(self, name: str, shape: list[int], type_id: int) -> None: ...
    def begin(self) -> None: ...
    def write_tensor_data(self, name: str, data: npt.NDArray[np.uint8]) -> None: ...
    def finish(self) -> list[Path]: ...
    def abort(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def alignment(self) -> int: ...
    @property
    def output_paths(self) -> list[Path]: ...
    @property
    def output_sizes(self) -> list[int]: ...
    @property
    def temp_paths(self) -> list[Path]: ...
    @property
    def bytes_written(self) -> int: ...
