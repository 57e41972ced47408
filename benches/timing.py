"""Timing helpers shared by the benchmarks: medians over interleaved rounds."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PAGE = 4096

#: name -> (read every tensor of a file, touch one byte of every page of the results)
Readers = dict[str, tuple[Callable[[Path], list[Any]], Callable[[list[Any]], int]]]


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def touch_numpy(arrays: list[np.ndarray]) -> int:
    return sum(int(a.reshape(-1).view(np.uint8)[::PAGE].sum()) for a in arrays)


def touch_torch(tensors: list[Any]) -> int:
    import torch

    return sum(int(t.reshape(-1).view(torch.uint8)[::PAGE].sum()) for t in tensors)


def measure_readers(path: Path, readers: Readers, repeat: int) -> dict[str, tuple[float, float]]:
    """Median ``(load, load + touch)`` seconds of each reader, rounds interleaved so that
    machine noise falls on all readers alike."""
    load: dict[str, list[float]] = {name: [] for name in readers}
    total: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(repeat):
        for name, (read, touch) in readers.items():
            gc.collect()
            start = time.perf_counter()
            out = read(path)
            loaded = time.perf_counter()
            touch(out)
            done = time.perf_counter()
            load[name].append(loaded - start)
            total[name].append(done - start)
            del out
    return {n: (statistics.median(load[n]), statistics.median(total[n])) for n in readers}
