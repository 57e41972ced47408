"""Write rust/quantlens-core/tests/data/quant_golden.bin: ggml blocks and the f32 values that
gguf-py's reference dequantizer (`gguf.quants.dequantize`) gives for them.

The Rust test `tests/quant_golden.rs` decodes the same blocks and compares bit for bit. This
covers the types the shared corpus lacks (IQ1_S, IQ1_M, IQ2_*, IQ3_*, TQ1_0, NVFP4) and
repeats the others on blocks that real weights never produce.

Two sections, all integers little-endian:

1. Value records, for every type gguf-py decodes: an all-zero block, an all-0xFF block,
   blocks whose f16 scales are special (+0, -0, subnormal, 65504, inf, NaN) and random
   blocks with moderate scales; stored with the expected values.
     b"QLGOLD01", u32 count, then per record:
     u32 ggml type id, u32 source bytes, u32 value count, source bytes, f32 values.
2. Bulk records, for the block types: 256 blocks drawn from a SplitMix64 stream (which the
   Rust test regenerates) with moderate f16 scales; only the sha256 of the expected f32
   little-endian values is stored, so every codebook row is exercised at little cost.
     u32 count, then per record: u32 ggml type id, u32 blocks, u64 seed, 32-byte sha256.

Run from anywhere: python3 scripts/make_quant_golden.py (needs gguf and numpy).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

SEED = 20260127
OUT = Path(__file__).resolve().parent.parent / "rust/quantlens-core/tests/data/quant_golden.bin"
M64 = (1 << 64) - 1

# Byte offsets of each block's f16 scale fields (ggml-common.h). MXFP4/NVFP4 scales are
# 8-bit and every value is valid; IQ1_M's f16 scale is the top nibbles of its scale words.
F16_FIELDS: dict[T, list[int]] = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.IQ2_XXS: [0],
    T.IQ2_XS: [0],
    T.IQ2_S: [0],
    T.IQ3_XXS: [0],
    T.IQ3_S: [0],
    T.IQ1_S: [0],
    T.IQ1_M: [],
    T.IQ4_NL: [0],
    T.IQ4_XS: [0],
    T.TQ1_0: [52],
    T.TQ2_0: [64],
    T.MXFP4: [],
    T.NVFP4: [],
}
IQ1_M_SCALES = 48  # byte offset of IQ1_M's four u16 scale words

SPECIAL_SCALES = [0x0000, 0x8000, 0x0001, 0x7BFF, 0x7C00, 0x7E00]
BULK_BLOCKS = 256


class SplitMix64:
    """The SplitMix64 generator; tests/quant_golden.rs has the same one."""

    def __init__(self, seed: int) -> None:
        self.state = seed & M64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)


def moderate_f16(r: int) -> int:
    """A normal f16 of magnitude in [2^-14, 2^6) from 64 random bits."""
    exponent = 1 + r % 20
    mantissa = (r >> 8) & 0x3FF
    sign = (r >> 63) & 1
    return (sign << 15) | (exponent << 10) | mantissa


def set_scale(block: bytearray, qtype: T, bits: int) -> None:
    if qtype == T.IQ1_M:
        for k in range(4):
            at = IQ1_M_SCALES + 2 * k
            word = int.from_bytes(block[at : at + 2], "little")
            word = (word & 0x0FFF) | (((bits >> (4 * k)) & 0xF) << 12)
            block[at : at + 2] = word.to_bytes(2, "little")
        return
    for at in F16_FIELDS[qtype]:
        block[at : at + 2] = bits.to_bytes(2, "little")


def has_f16_scale(qtype: T) -> bool:
    return qtype == T.IQ1_M or bool(F16_FIELDS[qtype])


def value_blocks(rng: np.random.Generator, qtype: T) -> bytes:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = max(10, 1024 // block_size)
    out = bytearray()
    for i in range(n_blocks):
        if i == 0:
            out += bytes(type_size)
            continue
        block = bytearray(b"\xff" * type_size if i == 1 else rng.bytes(type_size))
        special = i - 2
        if 0 <= special < len(SPECIAL_SCALES):
            bits = SPECIAL_SCALES[special]
        else:
            bits = moderate_f16(int(rng.integers(0, M64, dtype=np.uint64, endpoint=True)))
        if has_f16_scale(qtype):
            set_scale(block, qtype, bits)
        out += block
    return bytes(out)


def plain_values(rng: np.random.Generator, qtype: T) -> bytes:
    bits = rng.integers(0, 1 << 16, size=512, dtype=np.uint16)
    bits[:8] = [0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0x7C00, 0xFC00, 0x7E00]
    if qtype == T.BF16:
        bits[8:16] = [0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x8001, 0x7F7F, 0x3F80, 0xBF80]
    return bits.astype("<u2").tobytes()


def bulk_blocks(qtype: T, n_blocks: int, seed: int) -> bytes:
    """Random blocks with moderate scales; must match `bulk_blocks` in quant_golden.rs."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    rng = SplitMix64(seed)
    out = bytearray()
    for _ in range(n_blocks):
        block = bytearray()
        while len(block) < type_size:
            block += rng.next().to_bytes(8, "little")
        block = block[:type_size]
        if has_f16_scale(qtype):
            set_scale(block, qtype, moderate_f16(rng.next()))
        out += block
    return bytes(out)


def decode(src: bytes, qtype: T) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    with np.errstate(all="ignore"):  # NaN and inf scales are part of the test
        values = dequantize(np.frombuffer(src, dtype=np.uint8), qtype)
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    assert values.size == len(src) // type_size * block_size, qtype.name
    return values


def main() -> None:
    rng = np.random.default_rng(SEED)
    out = bytearray(b"QLGOLD01")

    records = [(t, plain_values(rng, t)) for t in (T.F16, T.BF16)]
    records += [(t, value_blocks(rng, t)) for t in F16_FIELDS]
    out += struct.pack("<I", len(records))
    for qtype, src in records:
        values = decode(src, qtype)
        out += struct.pack("<III", int(qtype), len(src), values.size)
        out += src
        out += values.astype("<f4").tobytes()
        nan = int(np.isnan(values).sum())
        print(f"values {qtype.name:8} {len(src):5} bytes -> {values.size:5} f32, {nan} NaN")

    out += struct.pack("<I", len(F16_FIELDS))
    for qtype in F16_FIELDS:
        seed = SEED * 1000 + int(qtype)
        values = decode(bulk_blocks(qtype, BULK_BLOCKS, seed), qtype)
        assert not np.isnan(values).any(), qtype.name
        digest = hashlib.sha256(values.astype("<f4").tobytes()).digest()
        out += struct.pack("<IIQ", int(qtype), BULK_BLOCKS, seed) + digest
        print(f"bulk   {qtype.name:8} {BULK_BLOCKS} blocks, sha256 {digest.hex()[:16]}…")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(bytes(out))
    print(f"wrote {OUT} ({len(out)} bytes)")


if __name__ == "__main__":
    main()
