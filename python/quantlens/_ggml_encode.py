"""Arrays into the bytes of a ggml tensor type: plain element types by conversion
(rounding as ggml does), block-quantized types through :func:`quantlens.quantize`."""

from __future__ import annotations

from typing import Any

import numpy as np

from quantlens.exceptions import UnsupportedTypeError
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

__all__ = ["PLAIN_NUMPY", "as_numpy", "encode", "f32_to_bf16_bits", "ggml_type_of"]

Q = GGMLQuantizationType

#: numpy element type of each plain (unblocked) ggml type.
PLAIN_NUMPY: dict[GGMLQuantizationType, str] = {
    Q.F32: "float32",
    Q.F16: "float16",
    Q.BF16: "bfloat16",
    Q.F64: "float64",
    Q.I8: "int8",
    Q.I16: "int16",
    Q.I32: "int32",
    Q.I64: "int64",
}
_BY_NUMPY = {name: qtype for qtype, name in PLAIN_NUMPY.items()}


def as_numpy(data: Any) -> np.ndarray:
    """A numpy view (or copy) of ``data``: numpy arrays as they are, CPU torch tensors by
    their bytes (bfloat16 as ``ml_dtypes.bfloat16``), buffers as ``uint8``."""
    if isinstance(data, np.ndarray):
        return data
    if type(data).__module__.split(".")[0] == "torch":
        import torch

        tensor = data.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if tensor.dtype == torch.bfloat16:
            import ml_dtypes

            raw: np.ndarray = tensor.contiguous().view(torch.int16).numpy()
            return raw.view(ml_dtypes.bfloat16)
        return np.asarray(tensor.contiguous().numpy())
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data)


def ggml_type_of(array: np.ndarray) -> GGMLQuantizationType | None:
    """The plain ggml type holding ``array``'s element type, if any."""
    return _BY_NUMPY.get(array.dtype.name)


def f32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bits as ggml rounds (``ggml_compute_fp32_to_bf16``): to nearest,
    ties to even; NaN keeps its sign and top bits and is made quiet."""
    import ml_dtypes

    values = np.ascontiguousarray(values, dtype=np.float32)
    # ml_dtypes rounds numbers exactly as ggml does (tested); NaNs follow ggml's rule.
    with np.errstate(invalid="ignore"):
        out: np.ndarray = values.astype(ml_dtypes.bfloat16).view(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        high = (values[nan].view(np.uint32) >> 16) | np.uint32(64)
        out[nan] = high.astype(np.uint16)
    return out


def _little_endian(array: np.ndarray) -> np.ndarray:
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def encode(data: Any, qtype: GGMLQuantizationType, threads: int | None = None) -> np.ndarray:
    """``data`` (weights in row-major order) as a flat ``uint8`` array of ``qtype``.

    Floats go to F32/F16 through float32 (as llama.cpp's converter does) and to BF16 with
    ggml's rounding; a bfloat16 source to BF16 and any source already of ``qtype`` are
    copied unchanged; integers stay integers. Block types are quantized by
    :func:`quantlens.quantize`.
    """
    array = as_numpy(data)
    if ggml_type_of(array) == qtype:
        return _little_endian(array).reshape(-1).view(np.uint8)
    kind = array.dtype.kind
    is_float = kind == "f" or array.dtype.name == "bfloat16"
    if qtype in (Q.I8, Q.I16, Q.I32, Q.I64):
        if kind not in "iub":
            raise UnsupportedTypeError(f"{array.dtype} values cannot be stored as {qtype.name}")
        out = array.astype(PLAIN_NUMPY[qtype])
        return _little_endian(out).reshape(-1).view(np.uint8)
    if not is_float and kind not in "iub":
        raise UnsupportedTypeError(f"{array.dtype} values cannot be stored as {qtype.name}")
    as_f32 = array.astype(np.float32, copy=False)
    if qtype == Q.F32:
        return _little_endian(as_f32).reshape(-1).view(np.uint8)
    if qtype == Q.F16:
        return _little_endian(as_f32.astype(np.float16)).reshape(-1).view(np.uint8)
    if qtype == Q.BF16:
        return f32_to_bf16_bits(as_f32).astype("<u2").reshape(-1).view(np.uint8)
    if qtype == Q.F64:
        return _little_endian(array.astype(np.float64)).reshape(-1).view(np.uint8)
    return _quantize(as_f32, qtype, threads)


def _quantize(values: np.ndarray, qtype: GGMLQuantizationType, threads: int | None) -> np.ndarray:
    block_size, _ = GGML_QUANT_SIZES[qtype]
    if values.ndim == 0 or values.shape[-1] % block_size:
        raise ValueError(
            f"rows of {values.shape[-1] if values.ndim else 1} weights are not whole "
            f"{qtype.name} blocks of {block_size}"
        )
    from quantlens.encode import can_quantize, quantize

    if not can_quantize(qtype):
        raise UnsupportedTypeError(f"this build of quantlens cannot quantize to {qtype.name}")
    rows = values.reshape(-1, values.shape[-1])
    packed = quantize(rows, qtype, threads=threads)
    return np.ascontiguousarray(packed).reshape(-1).view(np.uint8)
