"""Quantization throughput: quantlens against ggml's own quantizer, in one process.

For each type, on the same float32 rows (random normal weights, rows of 4096):

- ggml's ``ggml_quantize_chunk`` (llama-cpp-python's libggml-base, through ctypes) on one
  thread: what ``llama-quantize`` runs per thread;
- ``quantlens.quantize`` on one thread, then on every thread of the machine;
- with ``--imatrix``, both again with an importance matrix.

Rounds are interleaved and times are medians; throughput is in millions of weights per
second. The single-thread columns use the calling thread's CPU time (both quantizers run on
it), which a busy machine disturbs far less than wall time; the thread-scaling columns use
wall time. Each quantlens result is checked byte for byte against ggml's before timing.

    python benches/bench_quantize.py [--types Q4_K,IQ4_XS] [--mi 2] [--repeat 5] [--imatrix]

``--threads-scaling`` instead times quantlens alone on a larger tensor (``--scaling-mi``,
16 Mi weights by default) at 1 and 2 threads, wall time, and prints the speed-up: how close
to linear the row split scales, measured on as many threads as a small machine has. Beside
it runs the memory floor on the same threads: each thread reads its share of the input once
(numpy's max, which runs at memory speed and releases the GIL) and writes its share of a
new output of the type's quantized size (``fill``, which faults the pages in, as the
quantizer's threads do). No quantizer can be faster than that traffic. "2T/1T" of the floor
says what a second thread gains from memory alone; "of floor" is the quantizer's 2-thread
rate as a fraction of the floor's: near 1 the type is bound by memory, far below it by its
arithmetic, where a second thread helps. "waited" is the share of the 2-thread runs' wall
time during which some task waited for a CPU (Linux's /proc/pressure/cpu): other work on a
2-core machine takes the second thread's core, and the 2-thread figures then mean little.

    python benches/bench_quantize.py --threads-scaling [--scaling-mi 16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from ggml_ref import Ggml

import quantlens
from quantlens import GGML_QUANT_SIZES
from quantlens import GGMLQuantizationType as Q

MI = 1 << 20
THREADS = os.cpu_count() or 1
TYPES = [
    Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0,
    Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K,
    Q.IQ4_NL, Q.IQ4_XS,
]  # fmt: skip


def medians(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """Median ``(wall, thread CPU)`` seconds of each run, one warm-up each, rounds
    interleaved."""
    for fn in runs.values():
        fn()
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn()
            cpu[name].append(time.thread_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in runs}


def bench_type(
    ggml: Ggml, qtype: Q, x: np.ndarray, imatrix: np.ndarray | None, repeat: int
) -> dict[str, float]:
    block, size = GGML_QUANT_SIZES[qtype]
    ref = ggml.quantize(int(qtype), x, size, block, imatrix)
    ours = quantlens.quantize(x, qtype, imatrix=imatrix, threads=1).reshape(-1)
    if not np.array_equal(ours, ref):
        raise AssertionError(f"{qtype.name}: quantlens differs from ggml")
    runs: dict[str, Callable[[], object]] = {
        "ggml": lambda: ggml.quantize(int(qtype), x, size, block, imatrix),
        "ql1": lambda: quantlens.quantize(x, qtype, imatrix=imatrix, threads=1),
        "qlN": lambda: quantlens.quantize(x, qtype, imatrix=imatrix, threads=THREADS),
    }
    timed = medians(runs, repeat)
    rate = {f"{name} wall": x.size / wall / 1e6 for name, (wall, _) in timed.items()}
    rate.update({f"{name} cpu": x.size / cpu / 1e6 for name, (_, cpu) in timed.items()})
    return rate


def memory_floor(x: np.ndarray, out_bytes: int, pool: ThreadPoolExecutor, threads: int) -> None:
    """Read all of ``x`` and write a new ``out_bytes``-byte array, split over ``threads``
    threads: the memory traffic of quantizing ``x``, and nothing else."""
    out = np.empty(out_bytes, np.uint8)
    inputs, outputs = np.array_split(x, threads), np.array_split(out, threads)

    def part(i: int) -> None:
        outputs[i].fill(0)
        inputs[i].max()

    if threads == 1:
        part(0)
    else:
        list(pool.map(part, range(threads)))


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_wait_us() -> int | None:
    """Microseconds during which some task has waited for a CPU since boot (Linux's
    pressure stall information), or None where the kernel does not say."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None


class WaitMeter:
    """Wraps a run to add up its wall time and the time other work waited for a CPU
    meanwhile: on an otherwise idle machine two threads never wait for two CPUs."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn, self.wall, self.waited = fn, 0.0, 0.0

    def __call__(self) -> None:
        before, start = cpu_wait_us(), time.perf_counter()
        self.fn()
        self.wall += time.perf_counter() - start
        after = cpu_wait_us()
        if before is not None and after is not None:
            self.waited += (after - before) / 1e6

    def share(self) -> str:
        return "-" if cpu_wait_us() is None else f"{min(self.waited / self.wall, 1.0):.0%}"


def threads_scaling(types: list[Q], mi: int, repeat: int) -> None:
    """Wall-time throughput of quantlens and of the memory floor at 1 and 2 threads."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((mi * MI // 4096, 4096)).astype(np.float32)
    pool = ThreadPoolExecutor(2)
    print(
        f"quantlens thread scaling, Mweights/s ({mi} Mi weights, rows of 4096, wall time, "
        f"median of {repeat}; {THREADS} CPUs visible; load average {load_average()})"
    )
    print("floor = read the input, write a new output of the quantized size, same threads")
    print("waited = share of the 2T runs' wall time in which some task waited for a CPU")
    header = (
        f"{'type':<10}{'1T':>10}{'2T':>10}{'2T/1T':>8}"
        f"{'floor 1T':>10}{'floor 2T':>10}{'2T/1T':>8}{'of floor':>10}{'waited':>8}"
    )
    print(header)
    print("-" * len(header))
    for qtype in types:
        block, size = GGML_QUANT_SIZES[qtype]
        out_bytes = x.size // block * size
        runs: dict[str, Callable[[], object]] = {}
        for n in (1, 2):
            runs[f"{n}T"] = lambda n=n, t=qtype: quantlens.quantize(x, t, threads=n)
            runs[f"floor {n}T"] = lambda n=n, b=out_bytes: memory_floor(x, b, pool, n)
        # Every run metered alike, so that all carry the meter's two small reads.
        meters = {name: WaitMeter(fn) for name, fn in runs.items()}
        metered: dict[str, Callable[[], object]] = dict(meters)
        timed = medians(metered, repeat)
        rate = {name: x.size / wall / 1e6 for name, (wall, _) in timed.items()}
        one, two, floor_one, floor_two = (rate[k] for k in ("1T", "2T", "floor 1T", "floor 2T"))
        print(
            f"{qtype.name:<10}{one:>10.1f}{two:>10.1f}{two / one:>8.2f}"
            f"{floor_one:>10.1f}{floor_two:>10.1f}{floor_two / floor_one:>8.2f}"
            f"{two / floor_two:>10.2f}{meters['2T'].share():>8}",
            flush=True,
        )
    pool.shutdown()
    print(f"load average after: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", default=",".join(t.name for t in TYPES))
    parser.add_argument("--mi", type=int, default=2, help="Mi weights per tensor")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--imatrix", action="store_true", help="also time with an imatrix")
    parser.add_argument(
        "--threads-scaling", action="store_true", help="time quantlens at 1 and 2 threads"
    )
    parser.add_argument("--scaling-mi", type=int, default=16, help="Mi weights for scaling")
    args = parser.parse_args()
    types = [Q[name.strip().upper()] for name in args.types.split(",")]
    if args.threads_scaling:
        threads_scaling(types, args.scaling_mi, args.repeat)
        return
    ggml = Ggml()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.mi * MI // 4096, 4096)).astype(np.float32)
    w = (rng.random(4096) ** 2).astype(np.float32)
    print(
        f"quantize throughput, Mweights/s ({args.mi} Mi weights, rows of 4096, "
        f"median of {args.repeat}; cpu = single thread, thread CPU time; 1T/{THREADS}T = "
        f"quantlens wall time)"
    )
    header = (
        f"{'type':<16}{'ggml cpu':>10}{'ql cpu':>10}{'ql/ggml':>9}"
        f"{'ql 1T':>10}{f'ql {THREADS}T':>10}{f'{THREADS}T/1T':>8}"
    )
    print(header)
    print("-" * len(header))
    variants = [None, w] if args.imatrix else [None]
    for qtype in types:
        for imatrix in variants:
            r = bench_type(ggml, qtype, x, imatrix, args.repeat)
            label = qtype.name + (" +imatrix" if imatrix is not None else "")
            print(
                f"{label:<16}{r['ggml cpu']:>10.1f}{r['ql1 cpu']:>10.1f}"
                f"{r['ql1 cpu'] / r['ggml cpu']:>9.2f}{r['ql1 wall']:>10.1f}"
                f"{r['qlN wall']:>10.1f}{r['qlN wall'] / r['ql1 wall']:>8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
