"""Dequantization with torch operations, on whatever device the blocks are on (and Triton
kernels for Q4_K and Q6_K on CUDA devices).

Packed blocks are 4-7x smaller than their decoded weights, so uploading them and decoding on
the GPU moves far fewer bytes than decoding on the CPU and copying the result. Every decoder
here performs ggml's f32 operations in ggml's order (f16 scales widened to f32 first, then
``d * sc``, then ``* q``, then ``- m``), one torch operation per step, so nothing is fused
into an FMA and the results equal quantlens' CPU kernels bit for bit (any NaN only needs to
be a NaN: IEEE 754 leaves the payload of an operation's NaN to the hardware).

The 16-bit outputs round as the CPU kernels do: to nearest, ties to even; a NaN keeps its
sign and top payload bits and is made quiet (ggml's ``ggml_compute_fp32_to_bf16``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from quantlens.decode import GGMLTypeLike, dtype_name, to_ggml_type
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

if TYPE_CHECKING:
    import torch

__all__ = ["SUPPORTED_TYPES", "can_dequantize", "dequantize"]

#: Weights decoded per batch of torch operations: bounds the temporaries (about 32 bytes
#: per weight at the peak, 1 GiB here) while keeping launches few and large; on an H200 a
#: Q4_K/Q6_K model decodes 1.4x faster in batches of 2^25 weights than of 2^23.
DEFAULT_CHUNK_WEIGHTS = 1 << 25

_T = GGMLQuantizationType

#: The ``kvalues_iq4nl`` levels of IQ4_NL and IQ4_XS.
_IQ4_LEVELS = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


# -- tables -----------------------------------------------------------------------------------

_TABLES: dict[tuple[str, str], torch.Tensor] = {}


def _table(
    name: str, device: torch.device, values: Callable[[], Sequence[int]], dtype: Any = None
) -> torch.Tensor:
    """A small constant index tensor, built once per device."""
    key = (name, str(device))
    found: torch.Tensor | None = _TABLES.get(key)
    if found is None:
        import torch

        found = torch.tensor(list(values()), dtype=dtype or torch.int64, device=device)
        _TABLES[key] = found
    return found


def _q2_plane() -> tuple[list[int], list[int]]:
    """For each of a K-block's 256 weights in 16 sub-blocks of 16: the byte of the 64-byte
    2-bit quant array that holds it, and the shift that brings it down."""
    index, shift = [], []
    for k in range(16):
        start, s = 32 * (k // 8) + 16 * (k % 2), 2 * ((k % 8) // 2)
        index += [start + lane for lane in range(16)]
        shift += [s] * 16
    return index, shift


def _q6_layout() -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Q6_K per weight: low-nibble byte in ``ql``, nibble shift, byte in ``qh``, its shift,
    and the sub-block scale index."""
    ql, nib, qh, hshift, scale = [], [], [], [], []
    for half in range(2):
        for part in range(4):  # y0..y3 of ggml's loop
            for lane in range(32):
                ql.append(64 * half + lane + (32 if part in (1, 3) else 0))
                nib.append(4 if part >= 2 else 0)
                qh.append(32 * half + lane)
                hshift.append(2 * part)
                scale.append(8 * half + lane // 16 + 2 * part)
    return ql, nib, qh, hshift, scale


# -- field readers ----------------------------------------------------------------------------


def _f16(b: torch.Tensor, at: int) -> torch.Tensor:
    """The f16 at byte ``at`` of each block, widened to f32: shape ``(n, 1)``."""
    import torch

    return b[:, at : at + 2].contiguous().view(torch.float16).to(torch.float32)


def _f32(b: torch.Tensor, at: int) -> torch.Tensor:
    import torch

    return b[:, at : at + 4].contiguous().view(torch.float32)


def _i32(b: torch.Tensor) -> torch.Tensor:
    import torch

    return b.to(torch.int32)


def _u32(b: torch.Tensor, at: int) -> torch.Tensor:
    """The little-endian u32 at byte ``at`` of each block, as int64: shape ``(n, 1)``."""
    import torch

    parts = b[:, at : at + 4].to(torch.int64)
    return parts[:, :1] | parts[:, 1:2] << 8 | parts[:, 2:3] << 16 | parts[:, 3:4] << 24


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """Bytes ``(n, 16)`` to 32 quants: low nibbles, then high nibbles (Q4_0 order)."""
    import torch

    q = _i32(qs)
    return torch.cat([q & 0x0F, q >> 4], dim=1)


def _fifth_bits(qh: torch.Tensor) -> torch.Tensor:
    """Bit ``j`` of each block's u32 ``qh`` moved to bit 4, for ``j`` in 0..32."""
    import torch

    shifts = torch.arange(32, device=qh.device, dtype=torch.int64)
    return (((qh >> shifts) & 1) << 4).to(torch.int32)


def _float(q: torch.Tensor) -> torch.Tensor:
    import torch

    return q.to(torch.float32)


# -- decoders: (n, type_size) uint8 -> (n, block_size) float32 ----------------------------------


def _decode_f32(b: torch.Tensor) -> torch.Tensor:
    import torch

    return b.contiguous().view(torch.float32)


def _decode_f16(b: torch.Tensor) -> torch.Tensor:
    import torch

    return b.contiguous().view(torch.float16).to(torch.float32)


def _decode_bf16(b: torch.Tensor) -> torch.Tensor:
    import torch

    bits = b.contiguous().view(torch.int16).to(torch.int32) << 16
    return bits.view(torch.float32)


def _decode_q4_0(b: torch.Tensor) -> torch.Tensor:
    return _float(_nibbles(b[:, 2:18]) - 8) * _f16(b, 0)


def _decode_q4_1(b: torch.Tensor) -> torch.Tensor:
    return _float(_nibbles(b[:, 4:20])) * _f16(b, 0) + _f16(b, 2)


def _decode_q5_0(b: torch.Tensor) -> torch.Tensor:
    q = _nibbles(b[:, 6:22]) | _fifth_bits(_u32(b, 2))
    return _float(q - 16) * _f16(b, 0)


def _decode_q5_1(b: torch.Tensor) -> torch.Tensor:
    q = _nibbles(b[:, 8:24]) | _fifth_bits(_u32(b, 4))
    return _float(q) * _f16(b, 0) + _f16(b, 2)


def _decode_q8_0(b: torch.Tensor) -> torch.Tensor:
    import torch

    return _float(b[:, 2:34].contiguous().view(torch.int8)) * _f16(b, 0)


def _decode_q8_k(b: torch.Tensor) -> torch.Tensor:
    import torch

    return _f32(b, 0) * _float(b[:, 4:260].contiguous().view(torch.int8))


def _decode_q2_k(b: torch.Tensor) -> torch.Tensor:
    import torch

    index = _table("q2.index", b.device, lambda: _q2_plane()[0])
    shift = _table("q2.shift", b.device, lambda: _q2_plane()[1], torch.int32)
    sc = _i32(b[:, 0:16])
    d, dmin = _f16(b, 80), _f16(b, 82)
    dl = (d * _float(sc & 0x0F)).repeat_interleave(16, dim=1)
    ml = (dmin * _float(sc >> 4)).repeat_interleave(16, dim=1)
    q = (_i32(b[:, 16:80][:, index]) >> shift) & 3
    return dl * _float(q) - ml


def _q3_scales(sc: torch.Tensor) -> torch.Tensor:
    """The sixteen 6-bit Q3_K scales, biased by -32: ``(n, 16)`` int32."""
    import torch

    low = torch.cat([sc[:, 0:8] & 0x0F, sc[:, 0:8] >> 4], dim=1)
    k = torch.arange(16, device=sc.device)
    high = (sc[:, 8 + k % 4] >> (2 * (k // 4)).to(torch.int32)) & 3
    return (low | high << 4) - 32


def _decode_q3_k(b: torch.Tensor) -> torch.Tensor:
    import torch

    index = _table("q2.index", b.device, lambda: _q2_plane()[0])
    shift = _table("q2.shift", b.device, lambda: _q2_plane()[1], torch.int32)
    k = torch.arange(256, device=b.device) // 16
    lane = torch.arange(256, device=b.device) % 16
    hm_index = 16 * (k % 2) + lane
    bit = (1 << (4 * (k // 8) + (k % 8) // 2)).to(torch.int32)
    d = _f16(b, 108)
    dl = (d * _float(_q3_scales(_i32(b[:, 96:108])))).repeat_interleave(16, dim=1)
    low = (_i32(b[:, 32:96][:, index]) >> shift) & 3
    clear = (_i32(b[:, 0:32][:, hm_index]) & bit) == 0
    q = torch.where(clear, low - 4, low)
    return dl * _float(q)


def _k4_scales_mins(sc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The eight 6-bit scales and mins of Q4_K/Q5_K: two ``(n, 8)`` int32 tensors."""
    import torch

    scales = torch.cat([sc[:, 0:4] & 63, (sc[:, 8:12] & 0x0F) | (sc[:, 0:4] >> 6) << 4], dim=1)
    mins = torch.cat([sc[:, 4:8] & 63, (sc[:, 8:12] >> 4) | (sc[:, 4:8] >> 6) << 4], dim=1)
    return scales, mins


def _k4_dl_ml(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-weight ``d * sc`` and ``dmin * m`` of Q4_K/Q5_K: ``(n, 256)`` each."""
    scales, mins = _k4_scales_mins(_i32(b[:, 4:16]))
    dl = (_f16(b, 0) * _float(scales)).repeat_interleave(32, dim=1)
    ml = (_f16(b, 2) * _float(mins)).repeat_interleave(32, dim=1)
    return dl, ml


def _k4_nibbles(qs: torch.Tensor) -> torch.Tensor:
    """128 bytes to 256 quants: per 32 bytes, 32 low nibbles then 32 high nibbles."""
    import torch

    q = _i32(qs).reshape(-1, 4, 32)
    return torch.stack([q & 0x0F, q >> 4], dim=2).reshape(-1, 256)


def _decode_q4_k(b: torch.Tensor) -> torch.Tensor:
    dl, ml = _k4_dl_ml(b)
    return dl * _float(_k4_nibbles(b[:, 16:144])) - ml


def _decode_q5_k(b: torch.Tensor) -> torch.Tensor:
    import torch

    dl, ml = _k4_dl_ml(b)
    sub = torch.arange(256, device=b.device) // 32  # bit 2c (low) or 2c + 1 (high) of qh
    lane = torch.arange(256, device=b.device) % 32
    high = ((_i32(b[:, 16:48][:, lane]) >> sub.to(torch.int32)) & 1) << 4
    q = _k4_nibbles(b[:, 48:176]) + high
    return dl * _float(q) - ml


def _decode_q6_k(b: torch.Tensor) -> torch.Tensor:
    import torch

    layout = _q6_layout()
    ql_index = _table("q6.ql", b.device, lambda: layout[0])
    nib = _table("q6.nib", b.device, lambda: layout[1], torch.int32)
    qh_index = _table("q6.qh", b.device, lambda: layout[2])
    hshift = _table("q6.hshift", b.device, lambda: layout[3], torch.int32)
    scale_index = _table("q6.scale", b.device, lambda: layout[4])
    sc = _float(b[:, 192:208].contiguous().view(torch.int8))
    scales = (_f16(b, 208) * sc)[:, scale_index]
    low = (_i32(b[:, 0:128][:, ql_index]) >> nib) & 0x0F
    high = (_i32(b[:, 128:192][:, qh_index]) >> hshift) & 3
    return scales * _float((low | high << 4) - 32)


def _iq4_levels(q: torch.Tensor) -> torch.Tensor:
    import torch

    levels = _table("iq4.levels", q.device, lambda: _IQ4_LEVELS, torch.float32)
    return levels[q.to(torch.int64)]


def _decode_iq4_nl(b: torch.Tensor) -> torch.Tensor:
    return _f16(b, 0) * _iq4_levels(_nibbles(b[:, 2:18]))


def _decode_iq4_xs(b: torch.Tensor) -> torch.Tensor:
    import torch

    ib = torch.arange(8, device=b.device)
    scales_l = _i32(b[:, 4:8])[:, ib // 2] >> (4 * (ib % 2)).to(torch.int32)
    scales_h = (_u32(b, 2) & 0xFFFF) >> (2 * ib)
    sub = (scales_l & 0x0F) | ((scales_h & 3) << 4).to(torch.int32)
    dl = (_f16(b, 0) * _float(sub - 32)).repeat_interleave(32, dim=1)
    q = _nibbles(b[:, 8:136].reshape(-1, 16)).reshape(-1, 256)
    return dl * _iq4_levels(q)


_DECODERS: dict[GGMLQuantizationType, Callable[[Any], Any]] = {
    _T.F32: _decode_f32,
    _T.F16: _decode_f16,
    _T.BF16: _decode_bf16,
    _T.Q4_0: _decode_q4_0,
    _T.Q4_1: _decode_q4_1,
    _T.Q5_0: _decode_q5_0,
    _T.Q5_1: _decode_q5_1,
    _T.Q8_0: _decode_q8_0,
    _T.Q2_K: _decode_q2_k,
    _T.Q3_K: _decode_q3_k,
    _T.Q4_K: _decode_q4_k,
    _T.Q5_K: _decode_q5_k,
    _T.Q6_K: _decode_q6_k,
    _T.Q8_K: _decode_q8_k,
    _T.IQ4_NL: _decode_iq4_nl,
    _T.IQ4_XS: _decode_iq4_xs,
}

#: The ggml types :func:`dequantize` decodes.
SUPPORTED_TYPES: frozenset[GGMLQuantizationType] = frozenset(_DECODERS)


def can_dequantize(ggml_type: GGMLTypeLike) -> bool:
    """Whether :func:`dequantize` decodes ``ggml_type`` with torch operations."""
    try:
        return to_ggml_type(ggml_type) in _DECODERS
    except ValueError:
        return False


# -- output rounding --------------------------------------------------------------------------


def _store(values: torch.Tensor, out: torch.Tensor) -> None:
    """Write f32 ``values`` into ``out`` (same number of elements) in ``out``'s dtype,
    rounding as the CPU kernels do."""
    import torch

    values = values.reshape(-1)
    if out.dtype == torch.float32:
        out.copy_(values)
        return
    bits = values.view(torch.int32)
    nan = torch.isnan(values)
    if out.dtype == torch.bfloat16:
        # Sign and top payload bits, made quiet.
        quiet = ((bits >> 16) | 0x40).to(torch.int16)
    else:
        quiet = (((bits >> 16) & 0x8000) | 0x7E00 | ((bits >> 13) & 0x3FF)).to(torch.int16)
    rounded = values.to(out.dtype).view(torch.int16)  # to nearest, ties to even
    torch.where(nan, quiet, rounded, out=out.view(torch.int16))


# -- entry point ------------------------------------------------------------------------------


def dequantize(
    blocks: torch.Tensor,
    ggml_type: GGMLTypeLike,
    shape: Sequence[int] | None = None,
    dtype: Any = None,
    out: torch.Tensor | None = None,
    chunk_weights: int = DEFAULT_CHUNK_WEIGHTS,
) -> torch.Tensor:
    """Decode whole blocks of ``ggml_type`` on ``blocks``' device, bit-exact with
    :func:`quantlens.dequantize` (NaNs aside, which only need to be NaN).

    Args:
        blocks: the packed blocks as a ``uint8`` tensor (any shape; its bytes are read in
            order), on any device. Little-endian, as GGUF stores them.
        ggml_type: the blocks' type (enum member, id or name); see :data:`SUPPORTED_TYPES`.
        shape: shape of the result (default: flat).
        dtype: ``torch.float32`` (default), ``torch.float16`` or ``torch.bfloat16``; with
            ``out``, defaults to ``out``'s dtype.
        out: a contiguous tensor on ``blocks``' device with one element per weight to write
            into; it is returned.
        chunk_weights: weights decoded per batch of operations (bounds temporary memory).

    Returns:
        ``out``, or a new tensor on ``blocks``' device.
    """
    import torch

    qtype = to_ggml_type(ggml_type)
    decoder = _DECODERS.get(qtype)
    if decoder is None:
        raise ValueError(f"{qtype.name} has no torch decoder; decode it with quantlens.dequantize")
    if blocks.dtype != torch.uint8:
        raise TypeError(f"blocks must be a uint8 tensor, not {blocks.dtype}")
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    raw = blocks.contiguous().reshape(-1)
    if raw.numel() % type_size:
        raise ValueError(
            f"{raw.numel()} bytes is not a whole number of {qtype.name} blocks of {type_size} bytes"
        )
    n_blocks = raw.numel() // type_size
    n = n_blocks * block_size
    shape = (n,) if shape is None else tuple(int(d) for d in shape)
    if math.prod(shape) != n:
        raise ValueError(f"shape {shape} holds {math.prod(shape)} weights, the data {n}")
    if out is None:
        name = dtype_name(dtype if dtype is not None else "float32")
        out = torch.empty(shape, dtype=getattr(torch, name), device=blocks.device)
    else:
        if dtype is not None and dtype_name(dtype) != dtype_name(out.dtype):
            raise ValueError(f"out holds {out.dtype} but dtype asks for {dtype}")
        dtype_name(out.dtype)  # float32, float16 or bfloat16 only
        if out.device != blocks.device:
            raise ValueError(f"out is on {out.device}, the blocks on {blocks.device}")
        if not out.is_contiguous() or out.numel() != n:
            raise ValueError(f"out must be contiguous with {n} elements")
    flat = out.view(-1)
    rows = raw.view(n_blocks, type_size)
    if USE_TRITON and blocks.device.type == "cuda" and _triton_dequantize(rows, qtype, flat):
        return out
    step = max(1, chunk_weights // block_size)
    for start in range(0, n_blocks, step):
        stop = min(start + step, n_blocks)
        _store(decoder(rows[start:stop]), flat[start * block_size : stop * block_size])
    return out


# -- Triton kernels for the K-quants of Q4_K_M models ----------------------------------------
#
# One launch per tensor instead of dozens of torch operations per batch: the torch decoders
# above are bound by launching kernels, these by memory. ``enable_fp_fusion=False`` keeps
# ``d * q - m`` two roundings, as on the CPU.

_TRITON: dict[GGMLQuantizationType, Any] | None = None
#: Whether CUDA tensors of the types below use the Triton kernels (else torch operations).
USE_TRITON = True
_TRITON_BLOCKS = 8  # super-blocks per program


def _triton_kernels() -> dict[GGMLQuantizationType, Any]:
    """The Triton kernels by type (empty without Triton)."""
    global _TRITON
    if _TRITON is not None:
        return _TRITON
    try:
        import triton  # type: ignore[import-untyped]
        import triton.language as tl  # type: ignore[import-untyped]
    except ImportError:
        _TRITON = {}
        return _TRITON
    # Triton resolves the names a kernel uses among its module's globals, never in closures.
    namespace = globals()
    namespace["tl"] = tl

    @triton.jit
    def f16_at(rows, at, live):  # type: ignore[no-untyped-def]
        lo = tl.load(rows + at, mask=live, other=0).to(tl.uint16)
        hi = tl.load(rows + at + 1, mask=live, other=0).to(tl.uint16)
        return (lo | (hi << 8)).to(tl.float16, bitcast=True).to(tl.float32)

    namespace["f16_at"] = f16_at

    @triton.jit  # type: ignore[untyped-decorator]
    def store(out, y, live, mode: tl.constexpr):  # type: ignore[no-untyped-def]
        if mode == 0:
            tl.store(out, y, mask=live)
        else:
            bits = y.to(tl.uint32, bitcast=True)
            nan = (bits & 0x7FFFFFFF) > 0x7F800000
            if mode == 1:  # float16: to nearest even; NaNs quiet with sign and payload
                quiet = ((bits >> 16) & 0x8000) | 0x7E00 | ((bits >> 13) & 0x3FF)
                half = y.to(tl.float16).to(tl.uint16, bitcast=True).to(tl.uint32)
                bits16 = tl.where(nan, quiet, half).to(tl.uint16).to(tl.int16, bitcast=True)
                tl.store(out, bits16, mask=live)
            else:  # bfloat16, as ggml_compute_fp32_to_bf16
                rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
                bf16 = tl.where(nan, (bits >> 16) | 0x40, rounded).to(tl.uint16)
                tl.store(out, bf16.to(tl.int16, bitcast=True), mask=live)

    namespace["store"] = store

    @triton.jit  # type: ignore[untyped-decorator]
    def q4_k(src, dst, n_blocks, per: tl.constexpr, mode: tl.constexpr):  # type: ignore[no-untyped-def]
        block = tl.program_id(0) * per + tl.arange(0, per)[:, None]
        w = tl.arange(0, 256)[None, :]
        live = (block < n_blocks) & (w >= 0)
        rows = src + block.to(tl.int64) * 144
        d = f16_at(rows, 0, block < n_blocks)
        dmin = f16_at(rows, 2, block < n_blocks)
        c = w // 64
        high = (w % 64) // 32
        j = 2 * c + high
        jj = j % 4
        s_j = tl.load(rows + 4 + jj, mask=live, other=0).to(tl.int32)  # scales[j % 4]
        s_j4 = tl.load(rows + 8 + jj, mask=live, other=0).to(tl.int32)  # scales[j % 4 + 4]
        s_j8 = tl.load(rows + 12 + jj, mask=live, other=0).to(tl.int32)  # scales[j % 4 + 8]
        low_j = j < 4
        sc = tl.where(low_j, s_j & 63, (s_j8 & 0x0F) | ((s_j >> 6) << 4))
        m = tl.where(low_j, s_j4 & 63, (s_j8 >> 4) | ((s_j4 >> 6) << 4))
        byte = tl.load(rows + 16 + 32 * c + w % 32, mask=live, other=0).to(tl.int32)
        q = tl.where(high == 1, byte >> 4, byte & 0x0F)
        dl = d * sc.to(tl.float32)
        ml = dmin * m.to(tl.float32)
        y = dl * q.to(tl.float32) - ml
        store(dst + block.to(tl.int64) * 256 + w, y, live, mode)

    @triton.jit  # type: ignore[untyped-decorator]
    def q6_k(src, dst, n_blocks, per: tl.constexpr, mode: tl.constexpr):  # type: ignore[no-untyped-def]
        block = tl.program_id(0) * per + tl.arange(0, per)[:, None]
        w = tl.arange(0, 256)[None, :]
        live = (block < n_blocks) & (w >= 0)
        rows = src + block.to(tl.int64) * 210
        half = w // 128
        part = (w % 128) // 32
        lane = w % 32
        ql = tl.load(rows + 64 * half + lane + 32 * (part % 2), mask=live, other=0).to(tl.int32)
        qh = tl.load(rows + 128 + 32 * half + lane, mask=live, other=0).to(tl.int32)
        sc = tl.load(rows + 192 + 8 * half + lane // 16 + 2 * part, mask=live, other=0)
        low = (ql >> (4 * (part // 2))) & 0x0F
        q = (low | (((qh >> (2 * part)) & 3) << 4)) - 32
        scale = f16_at(rows, 208, block < n_blocks) * sc.to(tl.int8, bitcast=True).to(tl.float32)
        y = scale * q.to(tl.float32)
        store(dst + block.to(tl.int64) * 256 + w, y, live, mode)

    _TRITON = {_T.Q4_K: q4_k, _T.Q6_K: q6_k}
    return _TRITON


def _triton_dequantize(rows: torch.Tensor, qtype: GGMLQuantizationType, flat: torch.Tensor) -> bool:
    """Decode ``rows`` (``(n, type_size)`` uint8) into ``flat`` with a Triton kernel; whether
    one exists for ``qtype``."""
    import torch

    kernel = _triton_kernels().get(qtype)
    if kernel is None:
        return False
    mode = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}[flat.dtype]
    target = flat if mode == 0 else flat.view(torch.int16)
    n_blocks = rows.shape[0]
    if n_blocks:
        grid = (-(-n_blocks // _TRITON_BLOCKS),)
        kernel[grid](rows, target, n_blocks, _TRITON_BLOCKS, mode, enable_fp_fusion=False)
    return True
