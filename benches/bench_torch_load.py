"""Read every tensor of a ~1 GB ``torch.save`` checkpoint (``pytorch_model.bin``):
quantlens against ``torch.load(mmap=True, weights_only=True)``, in the same run.

The checkpoint holds bf16 and f32 layers of a small LLM. Each reader opens the file and
materialises every tensor as a torch tensor (and, for quantlens, as numpy arrays too);
rounds interleave the readers and the table reports medians. "load + touch" also reads
one byte of every 4 KiB page of the results, charging lazily mapped readers (both are) for
the page faults they left for later.

    python benches/bench_torch_load.py [--repeat N] [--size-mb MB] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

import quantlens

sys.path.insert(0, os.path.dirname(__file__))
from timing import Readers, measure_readers, touch_numpy, touch_torch

TORCH_DTYPES = {"BF16": torch.bfloat16, "F32": torch.float32}


def write_checkpoint(path: Path, size_mb: int) -> None:
    """Layers of four bf16 matrices, an f32 matrix and two f32 norms up to ``size_mb``."""
    hidden = 2048
    per_layer = (4 * hidden * hidden) * 2 + hidden * hidden * 4 + 2 * hidden * 4
    layers = max(1, size_mb * 2**20 // per_layer)
    gen = torch.Generator().manual_seed(0)
    state = {}
    for i in range(layers):
        for name in ("q", "k", "v", "o"):
            state[f"layers.{i}.attn.{name}.weight"] = torch.randn(hidden, hidden, generator=gen).to(
                torch.bfloat16
            )
        state[f"layers.{i}.mlp.weight"] = torch.randn(hidden, hidden, generator=gen)
        for name in ("attn_norm", "ffn_norm"):
            state[f"layers.{i}.{name}.weight"] = torch.ones(hidden)
    torch.save(state, path)


def quantlens_pt(path: Path) -> list[Any]:
    with quantlens.open_weights(path) as f:
        return [f.get_tensor(t.name, dtype=TORCH_DTYPES[t.dtype]) for t in f.tensors]


def quantlens_np(path: Path) -> list[Any]:
    with quantlens.open_weights(path) as f:
        return [f.get_tensor(name) for name in f]


def torch_load(path: Path) -> list[Any]:
    return list(torch.load(path, mmap=True, weights_only=True).values())


READERS: Readers = {
    "quantlens → torch": (quantlens_pt, touch_torch),
    "quantlens → numpy": (quantlens_np, touch_numpy),
    "torch.load(mmap=True)": (torch_load, touch_torch),
}


def check_equal(path: Path) -> None:
    """Same tensors as torch.load, bit for bit (checked once, outside the timing)."""
    ours = quantlens_pt(path)
    theirs = torch_load(path)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--keep", type=Path, help="write (or reuse) the checkpoint here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"bench-{args.size_mb}mb.bin"
        if not path.exists():
            write_checkpoint(path, args.size_mb)
        check_equal(path)
        size_gb = path.stat().st_size / 1e9
        results = measure_readers(path, READERS, args.repeat)
    base_load, base_total = results["torch.load(mmap=True)"]
    print(f"torch.save checkpoint, {size_gb:.2f} GB; median of {args.repeat} rounds, seconds")
    print()
    print("| reader | load | load + touch | speed-up (load) | speed-up (load + touch) |")
    print("|:--|--:|--:|--:|--:|")
    for name, (load, total) in results.items():
        print(
            f"| {name} | {load:.3f} | {total:.3f} | {base_load / load:.2f}x "
            f"| {base_total / total:.2f}x |"
        )


if __name__ == "__main__":
    main()
