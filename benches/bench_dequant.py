"""Dequantization throughput: quantlens against ggml's own dequantizer and gguf-py.

For each type and for a cache-sized (1 Mi weights) and a large (64 Mi weights) tensor,
measured side by side in one process:

- quantlens on one thread and on all threads, into a pre-faulted float32 buffer;
- ggml's ``to_float`` (llama-cpp-python's libggml-base, through ctypes) on one thread, and
  on all threads (rows split over a thread pool; ctypes releases the GIL);
- gguf-py's ``gguf.quants.dequantize`` (on 1 Mi weights: it is slow);
- a plain copy (numpy ``copyto``) of the float32 output size, single thread;
- into a fresh torch tensor: ``quantlens.dequantize(..., dtype=torch.float32)`` against
  ggml writing into ``torch.empty``.

Blocks come from ggml's quantizer applied to random normal weights (random blocks with
moderate scales for types that need an importance matrix). Times are medians.

    python benches/bench_dequant.py [--types Q4_K,Q8_0] [--sizes 1,64] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import gguf
import gguf.quants as gq
from ggml_ref import Ggml
from timing import median_time

import quantlens
from quantlens import GGML_QUANT_SIZES
from quantlens import GGMLQuantizationType as Q

MI = 1 << 20
THREADS = os.cpu_count() or 1


def make_blocks(ggml: Ggml, qtype: Q, weights: int) -> np.ndarray:
    """``weights`` weights of ``qtype``: 1 Mi quantized by ggml, tiled to the size asked."""
    block, size = GGML_QUANT_SIZES[qtype]
    base_weights = min(weights, MI)
    rng = np.random.default_rng(0)
    values = rng.standard_normal((base_weights // 4096, 4096)).astype(np.float32)
    if qtype == Q.F32:
        base = values.view(np.uint8).reshape(-1)
    elif qtype == Q.F16:
        base = values.astype(np.float16).view(np.uint8).reshape(-1)
    elif ggml.can_quantize(int(qtype)) and qtype != Q.Q8_K:
        base = ggml.quantize(int(qtype), values, size, block)
    else:
        base = rng.integers(0, 256, base_weights // block * size, dtype=np.uint8)
        for encoding, at in quantlens._core.scale_fields(int(qtype)):
            blocks = base.reshape(-1, size)
            if encoding in ("f16", "iq1m_f16"):
                blocks[:, at : at + 2] = [0x66, 0x22]
            elif encoding == "f32":
                blocks[:, at : at + 4] = [0, 0, 0x80, 0x3B]
    return np.tile(base, weights // base_weights)


def ggml_threads(
    ggml: Ggml, qtype: Q, src: np.ndarray, out: np.ndarray, pool: ThreadPoolExecutor
) -> None:
    block, size = GGML_QUANT_SIZES[qtype]
    fn = ggml.to_float_fn(int(qtype))
    assert fn is not None
    blocks = src.size // size
    parts = np.array_split(np.arange(blocks), THREADS)

    def run(part: np.ndarray) -> None:
        if part.size:
            b0, b1 = int(part[0]), int(part[-1]) + 1
            fn(src.ctypes.data + b0 * size, out.ctypes.data + b0 * block * 4, (b1 - b0) * block)

    list(pool.map(run, parts))


def bench_type(
    ggml: Ggml, qtype: Q, weights: int, repeat: int, pool: ThreadPoolExecutor
) -> dict[str, float]:
    src = make_blocks(ggml, qtype, weights)
    out = np.ones(weights, np.float32)  # pre-faulted
    other = np.ones(weights, np.float32)
    r: dict[str, float] = {}
    r["ql1"] = median_time(lambda: quantlens.dequantize(src, qtype, out=out, threads=1), repeat)
    r["qlN"] = median_time(lambda: quantlens.dequantize(src, qtype, out=out), repeat)
    check = out.copy()
    has_ggml = ggml.to_float_fn(int(qtype)) is not None
    if has_ggml:
        r["gg1"] = median_time(lambda: ggml.to_float(int(qtype), src, other), repeat)
        assert np.array_equal(check.view(np.uint32), other.view(np.uint32)), qtype.name
        r["ggN"] = median_time(lambda: ggml_threads(ggml, qtype, src, other, pool), repeat)
    r["copy"] = median_time(lambda: np.copyto(other, out), repeat)
    gguf_type = gguf.GGMLQuantizationType(int(qtype))
    if weights <= MI and (qtype in (Q.F32, Q.F16) or gguf_type in gq._type_traits):
        _, size = GGML_QUANT_SIZES[qtype]
        rows = src.reshape(-1, size * (4096 // GGML_QUANT_SIZES[qtype][0]))
        r["ggufpy"] = median_time(lambda: gq.dequantize(rows, gguf_type), max(1, repeat // 3))
    fresh_repeat = max(3, repeat // 2)
    r["ql_fresh"] = median_time(
        lambda: quantlens.dequantize(src, qtype, dtype=torch.float32), fresh_repeat
    )
    if has_ggml:

        def ggml_fresh() -> None:
            t = torch.empty(weights, dtype=torch.float32)
            ggml.to_float_fn(int(qtype))(src.ctypes.data, t.data_ptr(), weights)

        r["gg_fresh"] = median_time(ggml_fresh, fresh_repeat)
    return r


def fmt_rate(weights: int, seconds: float | None) -> str:
    return "-" if seconds is None else f"{weights / seconds / 1e9:.2f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{b / a:.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--types", help="comma-separated ggml type names (default: all decodable)")
    parser.add_argument("--sizes", default="1,64", help="tensor sizes in Mi weights")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    ggml = Ggml()
    types = (
        [Q[name.strip().upper()] for name in args.types.split(",")]
        if args.types
        else [
            t
            for t in Q
            if (quantlens._core.can_dequantize(int(t)) and GGML_QUANT_SIZES[t][0] > 1)
            or t in (Q.F16, Q.BF16)
        ]
    )
    print(
        f"quantlens {quantlens.__version__}, kernels: {quantlens.kernel_isa()}, threads: {THREADS}"
    )
    print("Gweights/s (higher is better); ratios are quantlens single-thread against the peer;")
    print("'of copy' is the single-thread rate as a fraction of copying the float32 output.")
    print()
    header = (
        "| type | size | quantlens 1T | quantlens all | ggml 1T | ggml all | gguf-py "
        "| vs ggml 1T | vs gguf-py | of copy | fresh torch: quantlens | ggml | speed-up |"
    )
    print(header)
    print("|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    gguf_py_times: dict[Q, float] = {}
    with ThreadPoolExecutor(THREADS) as pool:
        for qtype in types:
            for size in (int(s) for s in args.sizes.split(",")):
                weights = size * MI
                r = bench_type(ggml, qtype, weights, args.repeat, pool)
                if "ggufpy" in r:
                    gguf_py_times[qtype] = r["ggufpy"] / min(weights, MI)
                ggufpy = gguf_py_times.get(qtype)
                ggufpy_time = ggufpy * weights if ggufpy is not None else None
                print(
                    f"| {qtype.name} | {size} Mi | {fmt_rate(weights, r['ql1'])} "
                    f"| {fmt_rate(weights, r['qlN'])} | {fmt_rate(weights, r.get('gg1'))} "
                    f"| {fmt_rate(weights, r.get('ggN'))} | {fmt_rate(weights, ggufpy_time)} "
                    f"| {fmt_ratio(r['ql1'], r.get('gg1'))} | {fmt_ratio(r['ql1'], ggufpy_time)} "
                    f"| {100 * r['copy'] / r['ql1']:.0f}% "
                    f"| {fmt_rate(weights, r['ql_fresh'])} "
                    f"| {fmt_rate(weights, r.get('gg_fresh'))} "
                    f"| {fmt_ratio(r['ql_fresh'], r.get('gg_fresh'))} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
