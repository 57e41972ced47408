"""Read every tensor of a ~1 GB safetensors file into numpy and into torch: quantlens
against ``safetensors.safe_open`` (frameworks ``np`` and ``pt``), in the same run.

Two files are written to a temporary folder: one of bf16 tensors and one of f32 tensors,
shaped like the layers of a small LLM. Each reader opens the file and materialises every
tensor; the rounds interleave the readers and the table reports the median. "load" is the
time to get every tensor; "load + touch" also reads one byte of every 4 KiB page of the
results, which charges a reader that maps the file lazily (safetensors' torch path does)
for the page faults it left for later.

    python benches/bench_safetensors.py [--repeat N] [--size-mb MB] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

import quantlens

sys.path.insert(0, os.path.dirname(__file__))
from timing import Readers, measure_readers, touch_numpy, touch_torch


def write_model(path: Path, dtype: torch.dtype, size_mb: int) -> None:
    """Layers of four matrices and two norm vectors until the file holds ``size_mb``."""
    hidden = 2048
    item = torch.empty((), dtype=dtype).element_size()
    per_layer = (4 * hidden * hidden + 2 * hidden) * item
    layers = max(1, size_mb * 2**20 // per_layer)
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for i in range(layers):
        for name in ("q", "k", "v", "o"):
            w = torch.randn(hidden, hidden, generator=gen)
            tensors[f"layers.{i}.attn.{name}.weight"] = w.to(dtype)
        for name in ("attn_norm", "ffn_norm"):
            tensors[f"layers.{i}.{name}.weight"] = torch.ones(hidden, dtype=dtype)
    save_file(tensors, path, metadata={"format": "pt"})


def quantlens_np(path: Path) -> list[Any]:
    with quantlens.open_weights(path) as f:
        return [f.get_tensor(name) for name in f]


def quantlens_pt(path: Path) -> list[Any]:
    with quantlens.open_weights(path) as f:
        dtypes = {"BF16": torch.bfloat16, "F32": torch.float32}
        return [f.get_tensor(t.name, dtype=dtypes[t.dtype]) for t in f.tensors]


def safetensors_np(path: Path) -> list[Any]:
    with safe_open(path, framework="np") as f:
        return [f.get_tensor(name) for name in f.keys()]  # noqa: SIM118 (not a dict)


def safetensors_pt(path: Path) -> list[Any]:
    with safe_open(path, framework="pt") as f:
        return [f.get_tensor(name) for name in f.keys()]  # noqa: SIM118 (not a dict)


READERS: Readers = {
    "quantlens → numpy": (quantlens_np, touch_numpy),
    "safetensors np": (safetensors_np, touch_numpy),
    "quantlens → torch": (quantlens_pt, touch_torch),
    "safetensors pt": (safetensors_pt, touch_torch),
}


def check_equal(path: Path) -> None:
    """quantlens and safetensors give the same bytes (checked once, outside the timing)."""
    ours, theirs = quantlens_pt(path), safetensors_pt(path)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--keep", type=Path, help="write (or reuse) the test files here")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for label, dtype in (("bf16", torch.bfloat16), ("f32", torch.float32)):
            path = folder / f"bench-{label}-{args.size_mb}mb.safetensors"
            if not path.exists():
                write_model(path, dtype, args.size_mb)
            check_equal(path)
            size_gb = path.stat().st_size / 1e9
            results = measure_readers(path, READERS, args.repeat)
            for ours, theirs in (
                ("quantlens → numpy", "safetensors np"),
                ("quantlens → torch", "safetensors pt"),
            ):
                (ql, qt), (sl, stt) = results[ours], results[theirs]
                rows.append(
                    f"| {label} {size_gb:.2f} GB | {ours} | {ql:.3f} | {qt:.3f} "
                    f"| {theirs} | {sl:.3f} | {stt:.3f} | {sl / ql:.2f}x | {stt / qt:.2f}x |"
                )
    print(f"median of {args.repeat} rounds, seconds; ratio = safetensors time / quantlens time\n")
    print(
        "| file | reader | load | load + touch | peer | load | load + touch "
        "| ratio (load) | ratio (load + touch) |"
    )
    print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
