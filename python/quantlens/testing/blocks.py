"""Strategies for GGML blocks and quantized tensors with valid scales."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st

from quantlens import _core
from quantlens.decode import GGMLTypeLike, to_ggml_type
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

__all__ = ["QuantizedTensor", "decodable_types", "f16_scales", "quant_blocks", "quantized_tensors"]

# f16 bit patterns by kind.
_ZEROS = st.sampled_from([0x0000, 0x8000])
_SUBNORMAL = st.integers(0x0001, 0x03FF)
_EXTREME = st.sampled_from([0x7BFF, 0x0400, 0x7800, 0x0401])  # max, min normal, ...
_MODERATE = st.integers(0x1000, 0x3C00)  # ~2^-12 .. 1.0: what real scales look like
_FINITE = st.integers(0x0000, 0x7BFF)
_INFINITE = st.just(0x7C00)
_NAN = st.sampled_from([0x7E00, 0x7C01, 0x7FFF, 0x7D00])
_FEW_BLOCKS = st.integers(1, 4)


def f16_scales(special: bool = False) -> st.SearchStrategy[int]:
    """f16 bit patterns for block scales: mostly moderate values, plus zeros, subnormals,
    extremes and any finite value, with either sign; infinities and NaNs if ``special``.
    Without ``special``, every block decodes to finite weights."""
    kinds = [_MODERATE, _MODERATE, _ZEROS, _SUBNORMAL, _EXTREME, _FINITE]
    if special:
        kinds += [_INFINITE, _NAN]
    magnitude = st.one_of(*kinds)
    return st.tuples(magnitude, st.booleans()).map(lambda p: p[0] | (0x8000 if p[1] else 0))


def decodable_types() -> list[GGMLQuantizationType]:
    """Every ggml type quantlens can decode."""
    return [t for t in GGMLQuantizationType if _core.can_dequantize(int(t))]


def _f32_scales(special: bool) -> st.SearchStrategy[float]:
    if special:
        return st.floats(width=32)
    # Bounded so that scale times quant stays finite.
    return st.floats(-(2.0**100), 2.0**100, width=32)


def _write_scales(
    block: bytearray, qtype: GGMLQuantizationType, data: st.DataObject, special: bool
) -> None:
    for encoding, at in _core.scale_fields(int(qtype)):
        if encoding == "f16":
            struct.pack_into("<H", block, at, data.draw(f16_scales(special)))
        elif encoding == "f32":
            struct.pack_into("<f", block, at, data.draw(_f32_scales(special)))
        elif encoding == "e8m0":
            # 2^(e-128) times the largest FP4 value (12) overflows f32 above e = 250.
            block[at] = data.draw(st.integers(0, 255 if special else 250))
        elif encoding == "ue4m3x4":
            top = 0xFF if special else 0x7E
            for i in range(4):
                block[at + i] = data.draw(st.integers(0, top))
        elif encoding == "iq1m_f16":
            bits = data.draw(f16_scales(special))
            # The f16's four nibbles live in the top nibble of each u16 scale word.
            for i in range(4):
                word = struct.unpack_from("<H", block, at + 2 * i)[0]
                word = (word & 0x0FFF) | (((bits >> (4 * i)) & 0xF) << 12)
                struct.pack_into("<H", block, at + 2 * i, word)


# numpy dtype and float width of the plain float types.
_PLAIN_FLOATS: dict[GGMLQuantizationType, tuple[str, Literal[16, 32, 64]]] = {
    GGMLQuantizationType.F32: ("<f4", 32),
    GGMLQuantizationType.F16: ("<f2", 16),
    GGMLQuantizationType.F64: ("<f8", 64),
    GGMLQuantizationType.BF16: ("<u2", 16),
}


def _plain_floats(
    qtype: GGMLQuantizationType, count: int, special: bool
) -> st.SearchStrategy[bytes]:
    """Plain float values: any bit pattern with ``special``, else finite ones."""
    dtype, width = _PLAIN_FLOATS[qtype]
    values: st.SearchStrategy[Any]
    if qtype == GGMLQuantizationType.BF16:
        # bf16 is the top half of an f32: finite unless the exponent is all ones.
        top = st.integers(0, 0xFFFF)
        values = top if special else top.filter(lambda b: b & 0x7F80 != 0x7F80)
    elif special:
        values = st.floats(width=width)
    elif width == 64:
        # Finite, and finite once decoded to float32 too.
        f32_max = float(np.finfo(np.float32).max)
        values = st.floats(-f32_max, f32_max)
    else:
        values = st.floats(width=width, allow_nan=False, allow_infinity=False)
    return st.lists(values, min_size=count, max_size=count).map(
        lambda v: np.array(v, dtype=dtype).tobytes()
    )


@st.composite
def quant_blocks(
    draw: st.DrawFn,
    qtype: GGMLTypeLike,
    n_blocks: int | st.SearchStrategy[int] = _FEW_BLOCKS,
    special: bool = False,
) -> bytes:
    """``n_blocks`` random blocks of ``qtype`` with valid scales (see :func:`f16_scales`)."""
    qtype = to_ggml_type(qtype)
    _, type_size = GGML_QUANT_SIZES[qtype]
    count = n_blocks if isinstance(n_blocks, int) else draw(n_blocks)
    if qtype in _PLAIN_FLOATS:
        return draw(_plain_floats(qtype, count, special))
    data = draw(st.data())
    out = bytearray()
    for _ in range(count):
        kind = draw(st.sampled_from(["random", "random", "random", "zeros", "ones"]))
        if kind == "random":
            block = bytearray(draw(st.binary(min_size=type_size, max_size=type_size)))
        else:
            block = bytearray((b"\x00" if kind == "zeros" else b"\xff") * type_size)
        if kind != "zeros" or draw(st.booleans()):
            _write_scales(block, qtype, data, special)
        out += block
    return bytes(out)


@dataclass(frozen=True)
class QuantizedTensor:
    """Rows of blocks as gguf-py stores them: ``data`` is ``uint8`` of shape
    ``(rows, row_bytes)``; ``shape`` is the weights' row-major shape."""

    data: np.ndarray
    qtype: GGMLQuantizationType
    shape: tuple[int, ...]


@st.composite
def quantized_tensors(
    draw: st.DrawFn,
    qtypes: Sequence[GGMLTypeLike] | None = None,
    max_rows: int = 4,
    max_blocks_per_row: int = 4,
    special: bool = False,
) -> QuantizedTensor:
    """A random quantized tensor of one of ``qtypes`` (default: every decodable type)."""
    choices = [to_ggml_type(t) for t in qtypes] if qtypes is not None else decodable_types()
    qtype = draw(st.sampled_from(choices))
    rows = draw(st.integers(1, max_rows))
    per_row = draw(st.integers(1, max_blocks_per_row))
    raw = draw(quant_blocks(qtype, rows * per_row, special=special))
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    data = np.frombuffer(raw, dtype=np.uint8).reshape(rows, per_row * type_size).copy()
    return QuantizedTensor(data, qtype, (rows, per_row * block_size))
