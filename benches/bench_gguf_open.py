"""Open a large GGUF header and list its tensors: quantlens against gguf-py's GGUFReader.

The file has 10,000 tensors and a 150,000-token vocabulary (tokens, scores, token types
and BPE merges), like a large MoE model's header. Both readers run in this process, one
after the other, repeated; the table reports the median and the ratio.

    python benches/bench_gguf_open.py [--repeat N] [--keep PATH]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter

import quantlens

N_TENSORS = 10_000
N_VOCAB = 150_000
TYPES = [GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K, GGMLQuantizationType.F32]


def write_model(path: Path) -> None:
    writer = GGUFWriter(path, "llama")
    writer.add_block_count(N_TENSORS // 10)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"tok{i}" for i in range(N_VOCAB)])
    writer.add_token_scores([float(i) for i in range(N_VOCAB)])
    writer.add_token_types([1] * N_VOCAB)
    writer.add_token_merges([f"t{i} k{i}" for i in range(N_VOCAB)])
    for i in range(N_TENSORS):
        qtype = TYPES[i % len(TYPES)]
        _, type_size = quantlens.GGML_QUANT_SIZES[quantlens.GGMLQuantizationType(qtype)]
        n_bytes = 4 * 256 if qtype == GGMLQuantizationType.F32 else type_size
        data = np.zeros((1, n_bytes), dtype=np.uint8)
        writer.add_tensor(f"blk.{i // 10}.t{i % 10}.weight", data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def open_quantlens(path: Path) -> int:
    with quantlens.open_weights(path) as f:
        return len(f.tensors) + len(f.metadata) + 3


def open_gguf_py(path: Path) -> int:
    reader = GGUFReader(path)
    # gguf-py lists the header's version and counts as three more fields.
    return len(reader.tensors) + len(reader.fields)


def median_seconds(fn: Callable[[Path], int], path: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="write (or reuse) the test file here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "big-header.gguf"
        if not path.exists():
            write_model(path)
        assert open_quantlens(path) == open_gguf_py(path)
        ours = median_seconds(open_quantlens, path, args.repeat)
        theirs = median_seconds(open_gguf_py, path, max(3, args.repeat // 5))
        size_mib = path.stat().st_size / 2**20

    print(f"Open + list: {N_TENSORS:,} tensors, {N_VOCAB:,}-token vocabulary ({size_mib:.1f} MiB)")
    print()
    print("| reader | median time | vs quantlens |")
    print("|:--|--:|--:|")
    print(f"| quantlens {quantlens.__version__} | {ours * 1e3:.2f} ms | 1.0x |")
    print(f"| gguf-py GGUFReader | {theirs * 1e3:.1f} ms | {theirs / ours:.0f}x slower |")


if __name__ == "__main__":
    main()
