"""GGUF weights onto a CUDA device in bfloat16, three ways, in one run.

1. quantlens, CPU decode: the Rust kernels decode into pinned buffers, copied asynchronously
   (``quantlens.torch.load(..., gpu_dequant=False)``);
2. quantlens, GPU decode: packed blocks uploaded through the same pinned ring and decoded on
   the device (``gpu_dequant=True``) by the Triton kernels, then by torch operations alone;
3. transformers' own GGUF loader (``load_gguf_checkpoint``, gguf-py's numpy dequantizer),
   then ``.to(device)``.

The model is a Q4_K_M-like llama (Q4_K with Q6_K for ``attn_v``, ``ffn_down`` and the output,
f32 norms) of valid random blocks, written once per run from a fixed seed. Pinned
host-to-device bandwidth is measured in the same run; each way is reported with its time,
its rate in decoded bytes per second, and how much of that bandwidth its own transfers use.

    python benches/bench_torch_device.py --size-mb 1024

On a machine without CUDA it says so, times the CPU-target load, and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import quantlens
import quantlens.torch as qt
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

Q4_K, Q6_K = GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K
#: Byte offsets of the f16 super-block scales in each block type.
_SCALE_FIELDS = {Q4_K: (0, 2), Q6_K: (208,)}
HIDDEN, FFN, KV, VOCAB = 2048, 5632, 256, 32000


def random_blocks(rng: np.random.Generator, qtype: GGMLQuantizationType, shape: tuple[int, int]):
    """Random blocks for a ``shape`` weight matrix with moderate f16 super-block scales."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    rows, cols = shape
    n_blocks = rows * cols // block_size
    data = np.frombuffer(rng.bytes(n_blocks * type_size), np.uint8).reshape(n_blocks, type_size)
    data = data.copy()
    for at in _SCALE_FIELDS[qtype]:
        scales = rng.uniform(1e-4, 2e-2, n_blocks).astype(np.float16)
        data[:, at : at + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return data.reshape(rows, cols // block_size * type_size)


def layer_tensors(i: int) -> list[tuple[str, GGMLQuantizationType | None, tuple[int, int]]]:
    q6 = Q6_K if i % 2 == 0 else Q4_K  # Q4_K_M gives half the layers Q6_K attn_v/ffn_down
    return [
        (f"blk.{i}.attn_norm.weight", None, (1, HIDDEN)),
        (f"blk.{i}.attn_q.weight", Q4_K, (HIDDEN, HIDDEN)),
        (f"blk.{i}.attn_k.weight", Q4_K, (KV, HIDDEN)),
        (f"blk.{i}.attn_v.weight", q6, (KV, HIDDEN)),
        (f"blk.{i}.attn_output.weight", Q4_K, (HIDDEN, HIDDEN)),
        (f"blk.{i}.ffn_norm.weight", None, (1, HIDDEN)),
        (f"blk.{i}.ffn_gate.weight", Q4_K, (FFN, HIDDEN)),
        (f"blk.{i}.ffn_up.weight", Q4_K, (FFN, HIDDEN)),
        (f"blk.{i}.ffn_down.weight", q6, (HIDDEN, FFN)),
    ]


def packed_size(qtype: GGMLQuantizationType | None, shape: tuple[int, int]) -> int:
    if qtype is None:
        return shape[0] * shape[1] * 4
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    return shape[0] * shape[1] // block_size * type_size


def write_model(path: Path, size_mb: int, seed: int = 0) -> int:
    """A llama-architecture GGUF of about ``size_mb`` MiB; returns its layer count."""
    import gguf

    per_layer = sum(packed_size(q, s) for _, q, s in layer_tensors(0) + layer_tensors(1)) / 2
    outer = packed_size(Q4_K, (VOCAB, HIDDEN)) + packed_size(Q6_K, (VOCAB, HIDDEN))
    layers = max(1, round((size_mb * 2**20 - outer) / per_layer))
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("quantlens-bench-llama")
    writer.add_block_count(layers)
    writer.add_context_length(2048)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HIDDEN // 64)
    writer.add_head_count_kv(KV // 64)
    writer.add_rope_dimension_count(64)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB)
    writer.add_file_type(15)  # Q4_K_M
    rng = np.random.default_rng(seed)
    tensors = [("token_embd.weight", Q4_K, (VOCAB, HIDDEN))]
    for i in range(layers):
        tensors += layer_tensors(i)
    tensors += [("output_norm.weight", None, (1, HIDDEN)), ("output.weight", Q6_K, (VOCAB, HIDDEN))]
    for name, qtype, shape in tensors:
        if qtype is None:
            writer.add_tensor(name, rng.uniform(0.5, 1.5, shape[1]).astype(np.float32))
        else:
            raw = random_blocks(rng, qtype, shape)
            writer.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType(int(qtype)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return layers


def timed(run: Callable[[], Any], sync: Callable[[], None], repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` runs (each ended by ``sync``), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = run()
        sync()
        best = min(best, time.perf_counter() - start)
    return best, result


def h2d_bandwidth(torch: Any, device: Any, nbytes: int = 1 << 30) -> float:
    """Pinned host-to-device copy rate in bytes per second (best of five)."""
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    host.fill_(1)
    dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        dev.copy_(host, non_blocking=True)
        torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    del host, dev
    return nbytes / best


def transformers_load(path: Path, torch: Any, device: Any) -> dict[str, Any]:
    """What ``from_pretrained(..., gguf_file=...)`` does for the weights: read the config,
    build the model skeleton on the meta device, dequantize every tensor with gguf-py."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = dict(load_gguf_checkpoint(str(path))["config"])
    config = AutoConfig.for_model(config.pop("model_type"), **config)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    parsed = load_gguf_checkpoint(
        str(path), return_tensors=True, model_to_load=skeleton, torch_dtype=torch.bfloat16
    )
    return {name: t.to(device) for name, t in parsed["tensors"].items()}


def same_bits(a: dict[str, Any], b: dict[str, Any], torch: Any) -> bool:
    if list(a) != list(b):
        return False
    return all(
        torch.equal(a[k].view(torch.int16), b[k].view(torch.int16))
        if a[k].dtype == torch.bfloat16
        else torch.equal(a[k], b[k])
        for k in a
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="model size (default 1024)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per way (best is shown)")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--no-transformers", action="store_true", help="skip transformers")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench-q4_k_m.gguf"
        start = time.perf_counter()
        layers = write_model(path, args.size_mb)
        with quantlens.open_weights(path) as f:
            file_bytes = sum(t.nbytes or 0 for t in f.tensors)
            n_weights = sum(t.n_elements for t in f.tensors)
            n_tensors = len(f)
        out_bytes = 2 * n_weights
        print(
            f"model: {layers} layers, {n_tensors} tensors, {file_bytes / 1e9:.3f} GB of tensor "
            f"data, {n_weights / 1e9:.3f} G weights "
            f"-> {out_bytes / 1e9:.3f} GB bf16 (written in {time.perf_counter() - start:.1f} s)"
        )
        print(f"torch {torch.__version__}, quantlens kernels: {quantlens.kernel_isa()}")

        if not torch.cuda.is_available():
            print("no CUDA device: only the CPU-target load is timed")
            t, _ = timed(
                lambda: qt.load(path, "cpu", torch.bfloat16, progress=False),
                lambda: None,
                args.repeats,
            )
            print(f"quantlens load to cpu bf16: {t:.3f} s, {out_bytes / t / 1e9:.2f} GB/s")
            return 0

        device = torch.device(args.device)
        print(f"device: {torch.cuda.get_device_name(device)}")
        bw = h2d_bandwidth(torch, device)
        print(f"pinned host-to-device bandwidth: {bw / 1e9:.2f} GB/s\n")

        def sync() -> None:
            torch.cuda.synchronize(device)

        print(
            f"{'way':50} {'time s':>7} {'GB/s out':>8} {'H2D GB':>7} {'of H2D bw':>9} {'ratio':>6}"
        )
        base: list[float] = []

        def row(label: str, t: float, sent: float) -> None:
            """One line of the table, printed at once (``sent``: bytes moved to the GPU)."""
            base.append(t)
            share = f"{sent / t / bw:9.1%}" if sent else f"{'-':>9}"
            print(
                f"{label:50} {t:7.3f} {out_bytes / t / 1e9:8.2f} {sent / 1e9:7.3f} "
                f"{share} {t / base[0]:6.2f}",
                flush=True,
            )

        from quantlens import _torch_dequant

        results: dict[str, Any] = {}
        ways = [
            ("cpu", False, "quantlens: CPU decode + pinned async copy", out_bytes),
            ("triton", True, "quantlens: packed upload + GPU decode (Triton)", file_bytes),
            ("ops", True, "quantlens: packed upload + GPU decode (torch ops)", file_bytes),
        ]
        for key, gpu, label, sent in ways:
            _torch_dequant.USE_TRITON = key != "ops"

            def run(gpu: bool = gpu) -> Any:
                return qt.load(path, device, torch.bfloat16, progress=False, gpu_dequant=gpu)

            t, results[key] = timed(run, sync, args.repeats)
            row(label, t, sent)
        _torch_dequant.USE_TRITON = True
        exact = all(same_bits(results["cpu"], results[k], torch) for k in ("triton", "ops"))
        results.clear()
        gc.collect()
        torch.cuda.empty_cache()

        t, _ = timed(lambda: qt.load(path, "cpu", torch.bfloat16, progress=False), sync, 1)
        row("(quantlens: CPU decode into CPU memory)", t, 0)
        if not args.no_transformers:
            try:
                t, _ = timed(lambda: transformers_load(path, torch, device), sync, 1)
                row("transformers load_gguf_checkpoint + .to", t, out_bytes)
            except Exception as error:  # report, keep the quantlens figures
                print(f"transformers' GGUF loader did not run: {type(error).__name__}: {error}")
        print(f"\nCPU- and both GPU-decoded state dicts equal bit for bit: {exact}")
        return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
