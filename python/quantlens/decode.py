"""``dequantize``: decode GGML blocks into numpy arrays or torch tensors.

The Rust kernels write straight into the destination, in its element type, with the GIL
released; nothing here touches the values.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from quantlens import _core
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

__all__ = ["DTypeLike", "GGMLTypeLike", "dequantize", "kernel_isa", "to_ggml_type"]

#: A ggml type: the enum, its integer id, or its name (``"Q4_K"``).
GGMLTypeLike = GGMLQuantizationType | int | str
#: An output element type: ``"float32"``, ``"float16"``, ``"bfloat16"``, a numpy dtype
#: (``ml_dtypes.bfloat16`` for bfloat16) or a torch dtype.
DTypeLike = Any

_NAMES = {
    "float32": "float32",
    "f32": "float32",
    "float": "float32",
    "float16": "float16",
    "f16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def kernel_isa() -> str:
    """The instruction set of the kernels in use: ``avx512``, ``avx2``, ``neon`` or
    ``scalar`` (``QUANTLENS_FORCE_SCALAR=1`` forces the last)."""
    return _core.kernel_isa()


def to_ggml_type(value: GGMLTypeLike) -> GGMLQuantizationType:
    """The ggml type named by an enum member, id or name."""
    if type(value) is GGMLQuantizationType:
        return value
    if isinstance(value, str):
        try:
            return GGMLQuantizationType[value.upper()]
        except KeyError:
            raise ValueError(f"unknown ggml type name {value!r}") from None
    return GGMLQuantizationType(int(value))


def _is_torch(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] == "torch"


# Spellings already resolved: dtype objects are hashable, and resolving one through numpy
# costs more than decoding a small tensor.
_RESOLVED: dict[Any, str] = {}


def dtype_name(dtype: DTypeLike) -> str:
    """``float32``, ``float16`` or ``bfloat16`` for any accepted spelling of those."""
    try:
        return _RESOLVED[dtype]
    except (KeyError, TypeError):
        pass
    name = _resolve_dtype_name(dtype)
    with contextlib.suppress(TypeError):  # an unhashable spelling is resolved every time
        _RESOLVED[dtype] = name
    return name


def _resolve_dtype_name(dtype: DTypeLike) -> str:
    if isinstance(dtype, str):
        name = _NAMES.get(dtype.lower().removeprefix("torch."))
    elif _is_torch(dtype):
        name = _NAMES.get(str(dtype).removeprefix("torch."))
    else:
        try:
            name = _NAMES.get(np.dtype(dtype).name)
        except TypeError:
            name = None
    if name is None:
        raise ValueError(f"dtype must be float32, float16 or bfloat16, not {dtype!r}")
    return name


def _numpy_dtype(name: str) -> np.dtype[Any]:
    if name == "bfloat16":
        import ml_dtypes

        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(name)


def _raw_bytes(data: Any) -> np.ndarray:
    """A flat, contiguous ``uint8`` view of ``data`` (copying only if it is strided)."""
    if _is_torch(data):
        data = data.detach().contiguous().view(-1).view(_torch().uint8).numpy()
    elif not isinstance(data, np.ndarray):
        data = np.frombuffer(data, dtype=np.uint8)
    return np.ascontiguousarray(data).reshape(-1).view(np.uint8)


def _torch() -> Any:
    import torch

    return torch


def _out_shape(data: Any, raw: np.ndarray, qtype: GGMLQuantizationType) -> tuple[int, ...]:
    """gguf-py's convention: rows of bytes ``(..., row_bytes)`` become rows of weights."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    rows = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim >= 1
    if rows and data.shape[-1] % type_size == 0:
        return (*data.shape[:-1], data.shape[-1] // type_size * block_size)
    return (raw.size // type_size * block_size,)


def writable_view(out: Any, name: str, n: int) -> np.ndarray:
    """The numpy array the kernels write into: ``out`` itself, or a view sharing its memory
    (16-bit outputs as ``uint16`` bits)."""
    view: np.ndarray
    if _is_torch(out):
        if out.device.type != "cpu":
            raise ValueError(f"out must be a CPU tensor, not one on {out.device}")
        if not out.is_contiguous():
            raise ValueError("out must be contiguous")
        torch = _torch()
        if name == "float32":
            view = out.detach().numpy()
        else:
            view = out.detach().view(torch.int16).numpy().view(np.uint16)
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array or torch tensor, not {type(out).__name__}")
        if not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        view = out if name == "float32" else out.view(np.uint16)
    if view.size != n:
        raise ValueError(f"out has {view.size} elements but the data holds {n} weights")
    return view


def aligned_empty(shape: Sequence[int], dtype: np.dtype[Any]) -> np.ndarray:
    """An uninitialised array whose data starts on a 64-byte boundary, so that the
    kernels' 64-byte stores never straddle two cache lines (numpy only aligns to 16)."""
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + nbytes].view(dtype).reshape(tuple(shape))


def allocate_output(shape: Sequence[int], dtype: DTypeLike, out: Any) -> tuple[Any, str]:
    """``out`` (checked against ``dtype``) or a new array of ``shape``, with the name of its
    element type. A torch ``dtype`` gives a torch tensor; the memory is not touched here, so
    the threads that decode into it fault its pages in."""
    if out is not None:
        name = dtype_name(out.dtype)
        if dtype is not None and dtype_name(dtype) != name:
            raise ValueError(f"out holds {name} but dtype asks for {dtype_name(dtype)}")
        return out, name
    name = dtype_name(dtype if dtype is not None else "float32")
    if dtype is not None and _is_torch(dtype):
        return _torch().empty(tuple(shape), dtype=dtype), name
    return aligned_empty(shape, _numpy_dtype(name)), name


def dequantize(
    data: Any,
    ggml_type: GGMLTypeLike,
    shape: Sequence[int] | None = None,
    dtype: DTypeLike = None,
    out: Any = None,
    threads: int | None = None,
) -> Any:
    """Decode whole blocks of a ggml type, bit-exact with ggml.

    Args:
        data: the blocks: a numpy array (of any dtype; its bytes are read), ``bytes``,
            ``bytearray``, ``memoryview`` or a CPU torch tensor.
        ggml_type: the blocks' type (enum member, id or name).
        shape: shape of the result; by default a ``uint8`` array of rows ``(..., row_bytes)``
            gives rows of weights ``(..., weights_per_row)``, as in gguf-py, and anything
            else gives a flat array.
        dtype: ``float32`` (default), ``float16`` or ``bfloat16``, as a name, numpy dtype
            or torch dtype. A torch dtype returns a torch tensor. With ``out``, defaults to
            ``out``'s dtype.
        out: a C-contiguous numpy array or CPU torch tensor to write into (any shape with
            one element per weight); it is returned.
        threads: most threads to use (default ``QUANTLENS_NUM_THREADS`` or the CPU count).

    Returns:
        ``out``, or a new numpy array (torch tensor for a torch ``dtype``).
    """
    qtype = to_ggml_type(ggml_type)
    if threads is not None and threads < 1:
        raise ValueError("threads must be at least 1")
    raw = _raw_bytes(data)
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if raw.size % type_size:
        raise ValueError(
            f"{raw.size} bytes is not a whole number of {qtype.name} blocks of {type_size} bytes"
        )
    n = raw.size // type_size * block_size
    if shape is None:
        shape = _out_shape(data, raw, qtype)
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) != n:
        raise ValueError(f"shape {shape} holds {math.prod(shape)} weights, the data {n}")
    out, name = allocate_output(shape, dtype, out)
    _core.dequantize(raw, int(qtype), writable_view(out, name, n), name, threads)
    return out
