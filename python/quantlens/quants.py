"""gguf-py compatible names: switch ``from gguf.quants import dequantize`` to
``from quantlens.quants import dequantize`` and keep the same arguments and shapes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from quantlens.decode import dequantize as _dequantize
from quantlens.decode import to_ggml_type
from quantlens.encode import quantize_like_gguf
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

__all__ = [
    "GGML_QUANT_SIZES",
    "QK_K",
    "GGMLQuantizationType",
    "dequantize",
    "quant_shape_from_byte_shape",
    "quant_shape_to_byte_shape",
    "quantize",
]

#: Weights per k-quant super-block.
QK_K = 256


def quant_shape_to_byte_shape(
    shape: Sequence[int], quant_type: GGMLQuantizationType
) -> tuple[int, ...]:
    """The shape of the bytes holding a tensor of ``shape`` weights (rows of blocks)."""
    block_size, type_size = GGML_QUANT_SIZES[quant_type]
    if shape[-1] % block_size:
        raise ValueError(
            f"Quantized tensor row size ({shape[-1]}) is not a multiple of "
            f"{quant_type.name} block size ({block_size})"
        )
    return (*shape[:-1], shape[-1] // block_size * type_size)


def quant_shape_from_byte_shape(
    shape: Sequence[int], quant_type: GGMLQuantizationType
) -> tuple[int, ...]:
    """The shape of the weights held in bytes of ``shape`` (rows of blocks)."""
    block_size, type_size = GGML_QUANT_SIZES[quant_type]
    if shape[-1] % type_size:
        raise ValueError(
            f"Quantized tensor bytes per row ({shape[-1]}) is not a multiple of "
            f"{quant_type.name} type size ({type_size})"
        )
    return (*shape[:-1], shape[-1] // type_size * block_size)


def quantize(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray[Any, Any]:
    """Quantize ``data`` (rows of weights) as gguf-py does, byte-identical with ggml.

    ``F32`` and ``F16`` give float arrays, ``BF16`` and the quantized types ``uint8`` arrays
    of shape ``(..., row_bytes)``; a type quantlens cannot produce raises
    ``NotImplementedError``, as in gguf-py.
    """
    return quantize_like_gguf(data, qtype)


def dequantize(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray[Any, Any]:
    """Decode ``data`` (rows of blocks, as gguf-py stores them) into float32 weights.

    As in gguf-py: ``F32`` data comes back as a float32 view of the same memory, and a
    ``uint8`` array of shape ``(..., row_bytes)`` becomes ``(..., weights_per_row)``.
    """
    qtype = to_ggml_type(qtype)
    if qtype == GGMLQuantizationType.F32:
        return data.view(np.float32)
    if qtype == GGMLQuantizationType.F16 and data.dtype != np.uint8:
        halves = data.view(np.float16)
        decoded: np.ndarray = _dequantize(np.ascontiguousarray(halves), qtype, shape=halves.shape)
        return decoded
    raw = data if data.dtype == np.uint8 else data.view(np.uint8)
    shape = quant_shape_from_byte_shape(raw.shape, qtype) if raw.ndim else (0,)
    decoded = _dequantize(np.ascontiguousarray(raw), qtype, shape=shape)
    return decoded
