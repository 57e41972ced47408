"""Write rust/quantlens-core/tests/data/kquant_golden.bin: rows of f32 values and the bytes
ggml's `ggml_quantize_chunk` (libggml bundled with llama-cpp-python) makes of them for Q2_K,
Q3_K, Q4_K, Q5_K and Q6_K, without and with an importance matrix, and for Q4_0, Q4_1, Q5_0
and Q5_1 with one.

The Rust test `tests/quantize_kquants.rs` quantizes the same rows and compares byte for byte.

Two sections, all integers little-endian:

1. Explicit records: a row of values stored in full (random normals of several scales,
   outliers, zeros, constants, tiny, subnormal and huge magnitudes, NaN, infinities, random
   bit patterns), optionally importance weights, and ggml's output for each type.
   `portable` marks rows whose values and weights are finite and moderate (|x| <= 1e6,
   |w| <= 1e8), so that no NaN arises inside ggml's arithmetic. Only for those rows are the
   bytes the same on every CPU: a NaN made inside the arithmetic is negative on x86 and
   positive on ARM, and this file is recorded on x86-64.
     b"QLKQGD01", u32 count, then per record:
     u32 name length, name (UTF-8), u32 n_per_row, u32 has_weights (0/1),
     u32 portable (0/1), n_per_row f32 values, [n_per_row f32 weights],
     u32 output count, then per output: u32 ggml type id, u32 weighted (0/1),
     u32 byte count, the bytes.
2. Generated records: rows drawn from a SplitMix64 stream that the Rust test regenerates,
   so only the sha256 of ggml's output (all rows concatenated) is stored.
     u32 count, then per record: u64 seed, u32 rows, u32 n_per_row, u32 output count,
     then per output: u32 ggml type id, u32 weighted (0/1), 32-byte sha256.
   Draw i of a record is splitmix64(seed + (i + 1) * 0x9E3779B97F4A7C15). Row r starts at
   draw b = r * (3 * n + 1): draw b picks the row scale 2^(draw % 41 - 20); value j uses
   draws b + 1 + 2j (four 16-bit fields u_k, x = (u_0 + u_1 + u_2 + u_3) / 65536 - 2, all
   exact) and b + 2 + 2j (low 6 bits zero: x *= 37; bits 6..10 zero: x = 0); x is then
   multiplied by the row scale. Weight j is (draw b + 1 + 2n + j) >> 40 times 2^-23.

Run from anywhere: python3 scripts/make_kquant_golden.py (needs llama-cpp-python and numpy).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "rust/quantlens-core/tests/data/kquant_golden.bin"
SEED = 20261127

# ggml type id: (block bytes, values per block)
K_TYPES = {10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256)}
LEGACY_TYPES = {2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32)}
GAMMA = 0x9E3779B97F4A7C15


def _ggml() -> ctypes.CDLL:
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        if (lib_dir / name).exists():
            lib = ctypes.CDLL(os.fspath(lib_dir / name))
            break
    else:
        raise FileNotFoundError(f"no libggml-base in {lib_dir}")
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    return lib


LIB = _ggml()


def quantize(type_id: int, rows: np.ndarray, weights: np.ndarray | None) -> bytes:
    rows = np.ascontiguousarray(rows, np.float32)
    nrows, n = rows.shape
    size, block = {**K_TYPES, **LEGACY_TYPES}[type_id]
    out = np.zeros(nrows * n // block * size, np.uint8)
    w = None if weights is None else np.ascontiguousarray(weights, np.float32)
    LIB.ggml_quantize_chunk(
        type_id,
        rows.ctypes.data,
        out.ctypes.data,
        0,
        nrows,
        n,
        None if w is None else w.ctypes.data,
    )
    return out.tobytes()


def outputs(weighted: bool) -> Iterator[tuple[int, bool]]:
    for t in K_TYPES:
        yield t, False
    if weighted:
        for t in K_TYPES:
            yield t, True
        for t in LEGACY_TYPES:
            yield t, True


def explicit_rows(rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    def normal(n: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(n) * scale).astype(np.float32)

    for n, scale in [(256, 1.0), (512, 0.02), (1024, 1e-3), (2048, 1.0), (768, 30.0), (256, 1e4)]:
        yield f"normal {scale:g}", normal(n, scale)
    x = normal(1024, 1.0)
    x[rng.integers(0, 1024, 20)] *= 100
    yield "outliers", x
    x = normal(512, 1.0)
    x[::7] = 0
    yield "sparse", x
    yield "zeros", np.zeros(256, np.float32)
    yield "negative zeros", -np.zeros(256, np.float32)
    yield "constant", np.full(256, 0.37, np.float32)
    yield "negative constant", np.full(256, -2.5, np.float32)
    yield "tiny", normal(256, 1e-20)
    yield "subnormal", normal(256, 1e-40)
    yield "below group eps", normal(256, 1e-16)
    yield "huge", normal(256, 1e30)
    yield "f16 overflow", normal(256, 6e4)
    yield "f16 subnormal scales", normal(256, 1e-6)
    yield "all positive", np.abs(normal(512, 1.0))
    yield "all negative", -np.abs(normal(256, 1.0))
    yield "uniform", rng.uniform(-1, 1, 256).astype(np.float32)
    yield "small integers", rng.integers(-8, 8, 256).astype(np.float32)
    yield "half grid", (rng.integers(-16, 16, 256) * 0.5).astype(np.float32)
    yield "lognormal", (rng.lognormal(0, 3, 512) * rng.choice([-1, 1], 512)).astype(np.float32)
    x = np.zeros(256, np.float32)
    x[::16] = 1
    yield "spikes", x
    x = normal(512, 1.0)
    x[:128] = 0
    yield "zero sub-blocks", x
    x = normal(256, 1.0)
    x[5] = np.nan
    yield "one nan", x
    x = normal(256, 1.0)
    x[rng.integers(0, 256, 32)] = np.inf
    yield "infinities", x
    x = normal(256, 1.0)
    x[3] = -np.inf
    yield "one -inf", x
    yield "all nan", np.full(256, np.nan, np.float32)
    yield "float max", np.full(256, 3.4e38, np.float32)
    x = normal(256, 1.0)
    x[0] = 3.4e38
    yield "one float max", x
    bits = rng.integers(0, 2**32, 512, dtype=np.uint64).astype(np.uint32)
    yield "random bits", bits.view(np.float32)


def weight_kinds(rng: np.random.Generator, n: int) -> Iterator[np.ndarray]:
    while True:
        yield rng.random(n).astype(np.float32)
        yield np.ones(n, np.float32)
        w = rng.random(n).astype(np.float32)
        w[::3] = 0
        yield w
        yield rng.lognormal(0, 4, n).astype(np.float32)
        yield np.zeros(n, np.float32)


def portable(values: np.ndarray, weights: np.ndarray | None) -> bool:
    moderate = bool(np.all(np.isfinite(values)) and np.all(np.abs(values) <= 1e6))
    if weights is not None:
        moderate = moderate and bool(
            np.all(np.isfinite(weights)) and np.all(np.abs(weights) <= 1e8)
        )
    return moderate


def splitmix(seed: int, count: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.arange(1, count + 1, dtype=np.uint64) * np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def generated_rows(seed: int, nrows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    draws = splitmix(seed, nrows * (3 * n + 1)).reshape(nrows, 3 * n + 1)
    exps = (draws[:, 0] % np.uint64(41)).astype(np.int64) - 20
    main = draws[:, 1 : 1 + 2 * n : 2]
    aux = draws[:, 2 : 2 + 2 * n : 2]
    fields = [
        ((main >> np.uint64(16 * k)) & np.uint64(0xFFFF)).astype(np.float32) for k in range(4)
    ]
    x = (fields[0] + fields[1] + fields[2] + fields[3]) / np.float32(65536) - np.float32(2)
    x = np.where((aux & np.uint64(63)) == 0, x * np.float32(37), x)
    x = np.where(((aux >> np.uint64(6)) & np.uint64(31)) == 0, np.float32(0), x)
    x = (x * np.ldexp(np.float32(1), exps)[:, None].astype(np.float32)).astype(np.float32)
    w = ((draws[:, 1 + 2 * n :] >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-23)).astype(
        np.float32
    )
    return x, w


def main() -> None:
    rng = np.random.default_rng(SEED)
    out = bytearray(b"QLKQGD01")
    records = list(explicit_rows(rng))
    out += struct.pack("<I", 2 * len(records))
    kinds = weight_kinds(rng, 2048)
    for name, x in records:
        n = x.size
        for weights in (None, next(kinds)[:n]):
            label = name.encode()
            out += struct.pack("<I", len(label)) + label
            out += struct.pack("<III", n, weights is not None, portable(x, weights))
            out += x.astype("<f4").tobytes()
            if weights is not None:
                out += weights.astype("<f4").tobytes()
            outs = list(outputs(weights is not None))
            out += struct.pack("<I", len(outs))
            for type_id, weighted in outs:
                q = quantize(type_id, x.reshape(1, n), weights if weighted else None)
                out += struct.pack("<III", type_id, weighted, len(q)) + q

    generated = [
        (SEED + i, rows, n)
        for i, (rows, n) in enumerate([(64, 256), (16, 1024), (8, 2048), (96, 512)])
    ]
    out += struct.pack("<I", len(generated))
    for seed, nrows, n in generated:
        x, w = generated_rows(seed, nrows, n)
        outs = list(outputs(True))
        out += struct.pack("<QIII", seed, nrows, n, len(outs))
        for type_id, weighted in outs:
            if weighted:
                q = b"".join(quantize(type_id, x[r : r + 1], w[r]) for r in range(nrows))
            else:
                q = quantize(type_id, x, None)
            out += struct.pack("<II", type_id, weighted) + hashlib.sha256(q).digest()
    OUT.write_bytes(bytes(out))
    print(f"wrote {OUT} ({len(out)} bytes)")


if __name__ == "__main__":
    main()
