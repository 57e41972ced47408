"""``quantize``: float weights into ggml blocks, byte-identical with ggml's quantizers.

The Rust core quantizes with the GIL released, widening float16 and bfloat16 input to
float32 in small buffers as it goes; nothing here touches the values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from quantlens import _core
from quantlens.decode import GGMLTypeLike, to_ggml_type
from quantlens.exceptions import UnsupportedTypeError
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

__all__ = ["accepts_imatrix", "can_quantize", "quantize"]


def can_quantize(qtype: GGMLTypeLike) -> bool:
    """Whether :func:`quantize` can produce ``qtype`` (enum member, id or name)."""
    return _core.can_quantize(int(to_ggml_type(qtype)))


def accepts_imatrix(qtype: GGMLTypeLike) -> bool:
    """Whether an importance matrix changes how :func:`quantize` quantizes ``qtype``
    (every type takes one; ``Q8_0`` ignores it, as ggml does)."""
    return _core.accepts_imatrix(int(to_ggml_type(qtype)))


def _is_torch(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] == "torch"


def _weights(data: Any) -> tuple[np.ndarray, str]:
    """A C-contiguous numpy view of ``data`` and its element type's name; 16-bit floats
    come as ``uint16`` bits."""
    if _is_torch(data):
        import torch

        tensor = data.detach()
        if tensor.device.type != "cpu":
            raise ValueError(f"quantize takes CPU tensors, not {tensor.device.type} ones")
        if tensor.dtype == torch.bfloat16:
            bits = tensor.contiguous().view(torch.int16).numpy().view(np.uint16)
            return bits, "bfloat16"
        if tensor.dtype not in (torch.float32, torch.float16):
            tensor = tensor.to(torch.float32)
        data = tensor.contiguous().numpy()
    array = np.asarray(data)
    if array.ndim == 0:
        raise ValueError("quantize needs at least one dimension (a row)")
    if array.dtype == np.float16:
        return np.ascontiguousarray(array).view(np.uint16), "float16"
    if array.dtype.name == "bfloat16" and array.dtype.itemsize == 2:
        return np.ascontiguousarray(array).view(np.uint16), "bfloat16"
    if array.dtype.kind not in "fiub":
        raise TypeError(f"quantize takes float weights, not {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32), "float32"


def quantize(
    data: Any,
    qtype: GGMLTypeLike,
    *,
    imatrix: Any = None,
    threads: int | None = None,
) -> npt.NDArray[np.uint8]:
    """Quantize rows of weights to a ggml type, byte for byte as ggml does.

    Args:
        data: weights: a numpy array or CPU torch tensor of float32, float16 or bfloat16
            (other real dtypes are converted to float32 first). The last dimension is a
            row and must be a multiple of the type's block size; every leading dimension
            counts rows.
        qtype: the ggml type (enum member, id or name such as ``"Q8_0"``).
        imatrix: importance weights, one per column (``data.shape[-1]`` floats), as
            llama.cpp's ``--imatrix`` files hold them; as in ggml, ``Q8_0`` ignores them.
        threads: most threads to use (default ``QUANTLENS_NUM_THREADS`` or the CPU count).

    Returns:
        A ``uint8`` array of shape ``data.shape[:-1] + (row_bytes,)``, as
        ``gguf.quants.quantize`` returns.

    Raises:
        UnsupportedTypeError: quantlens has no quantizer for ``qtype``.
        ValueError: the row length is not a whole number of blocks, or the importance
            matrix has the wrong length.
    """
    qtype = to_ggml_type(qtype)
    if not can_quantize(qtype):
        raise UnsupportedTypeError(f"quantlens cannot quantize to {qtype.name}")
    if threads is not None and threads < 1:
        raise ValueError("threads must be at least 1")
    weights, dtype = _weights(data)
    n_per_row = weights.shape[-1]
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if n_per_row % block_size:
        raise ValueError(
            f"rows of {n_per_row} weights are not a whole number of {qtype.name} blocks "
            f"of {block_size}"
        )
    row_bytes = n_per_row // block_size * type_size
    if weights.size == 0:
        return np.zeros((*weights.shape[:-1], row_bytes), np.uint8)
    weights_imatrix = None
    if imatrix is not None:
        if _is_torch(imatrix):
            imatrix = imatrix.detach().to("cpu").float().numpy()
        weights_imatrix = np.ascontiguousarray(imatrix, dtype=np.float32).reshape(-1)
    flat = _core.quantize(
        weights.reshape(-1), dtype, int(qtype), n_per_row, weights_imatrix, threads
    )
    return flat.reshape(*weights.shape[:-1], row_bytes)


def _bfloat16_bytes(data: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """float32 → bfloat16 as ggml rounds it (nearest even; NaN kept quiet), as bytes."""
    bits = data.astype(np.float32, copy=False).view(np.uint32).astype(np.uint64)
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
    halves = np.where(nan, (bits >> 16) | 0x40, rounded).astype(np.uint16)
    return halves.view(np.uint8).reshape(*data.shape[:-1], data.shape[-1] * 2)


def quantize_like_gguf(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """``gguf.quants.quantize``: ``F32``/``F16`` give float arrays, ``BF16`` and every
    quantized type give ``uint8`` rows; types quantlens cannot produce raise
    ``NotImplementedError``."""
    qtype = to_ggml_type(qtype)
    if qtype == GGMLQuantizationType.F32:
        return data.astype(np.float32, copy=False)
    if qtype == GGMLQuantizationType.F16:
        return data.astype(np.float16, copy=False)
    if qtype == GGMLQuantizationType.BF16:
        return _bfloat16_bytes(np.asarray(data, dtype=np.float32))
    if not can_quantize(qtype):
        raise NotImplementedError(f"Quantization for {qtype.name} is not yet implemented")
    return quantize(data, qtype)
