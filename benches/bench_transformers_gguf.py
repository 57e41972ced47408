"""A Q4_K_M llama GGUF to a transformers state dict on the CPU: quantlens'
``load_gguf_checkpoint`` against transformers' own, in the same run.

The file has TinyLlama's geometry (hidden 2048, 32 query and 4 key/value heads, FFN 5632,
32000 tokens) with as many layers as ``--size-mb`` allows, typed like llama-quantize's
Q4_K_M (Q4_K, with Q6_K for attn_v, ffn_down and output; F32 norms) and filled with random
blocks whose f16 scales are valid. It is written once into a cache folder.

Each loader runs in its own child process, so that its peak resident memory
(``ru_maxrss``) is its own: the table gives the load time, the peak, the peak above the
process's footprint before loading (imports and a meta-device model), their ratios to the
size of the state dict produced, and the speed ratio. A checksum of every tensor's bits is
compared across loaders after the clock stops. A third child, ``fill-only``, allocates and
fills tensors of the same shapes without reading anything: the floor that fresh output
memory sets on this machine.

    python benches/bench_transformers_gguf.py [--size-mb MB] [--dtype bf16] [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HIDDEN, HEADS, KV_HEADS, FFN, VOCAB = 2048, 32, 4, 5632, 32000
# (name, rows, cols, type) per layer; Q4_K_M's types.
LAYER = [
    ("attn_norm", 1, HIDDEN, "F32"),
    ("attn_q", HIDDEN, HIDDEN, "Q4_K"),
    ("attn_k", KV_HEADS * HIDDEN // HEADS, HIDDEN, "Q4_K"),
    ("attn_v", KV_HEADS * HIDDEN // HEADS, HIDDEN, "Q6_K"),
    ("attn_output", HIDDEN, HIDDEN, "Q4_K"),
    ("ffn_norm", 1, HIDDEN, "F32"),
    ("ffn_gate", FFN, HIDDEN, "Q4_K"),
    ("ffn_up", FFN, HIDDEN, "Q4_K"),
    ("ffn_down", HIDDEN, FFN, "Q6_K"),
]
DTYPES = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}


def _nbytes(rows: int, cols: int, type_name: str) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
    return rows * cols // block * size


def _tensors(layers: int) -> list[tuple[str, int, int, str]]:
    out = [("token_embd.weight", VOCAB, HIDDEN, "Q4_K")]
    for i in range(layers):
        out += [(f"blk.{i}.{role}.weight", r, c, t) for role, r, c, t in LAYER]
    out += [("output_norm.weight", 1, HIDDEN, "F32"), ("output.weight", VOCAB, HIDDEN, "Q6_K")]
    return out


def _random_data(rng: np.random.Generator, rows: int, cols: int, type_name: str) -> np.ndarray:
    """Random blocks with moderate f16 scales (finite weights), or normal F32 values."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    from quantlens import _core

    if type_name == "F32":
        return rng.standard_normal(rows * cols).astype(np.float32)
    qtype = GGMLQuantizationType[type_name]
    nbytes = _nbytes(rows, cols, type_name)
    _, size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(nbytes // size, size), dtype=np.uint8)
    for _encoding, at in _core.scale_fields(int(qtype)):  # all f16 for these types
        scales = rng.integers(0x1400, 0x2400, size=blocks.shape[0], dtype=np.uint16)
        blocks[:, at : at + 2] = scales.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


def write_model(path: Path, size_mb: int) -> None:
    """The Q4_K_M llama file of about ``size_mb`` MiB, written tensor by tensor."""
    import gguf

    per_layer = sum(_nbytes(r, c, t) for _, r, c, t in LAYER)
    fixed = _nbytes(VOCAB, HIDDEN, "Q4_K") + _nbytes(VOCAB, HIDDEN, "Q6_K")
    layers = max(1, (size_mb * 2**20 - fixed) // per_layer)
    tensors = _tensors(layers)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("quantlens bench llama")
    writer.add_context_length(2048)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(15)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(VOCAB - 3)])
    writer.add_token_scores([0.0] * VOCAB)
    writer.add_token_types([2, 3, 3] + [1] * (VOCAB - 3))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    for name, rows, cols, type_name in tensors:
        if type_name == "F32":
            writer.add_tensor_info(name, [cols], np.dtype(np.float32), rows * cols * 4)
        else:
            nbytes = _nbytes(rows, cols, type_name)
            shape = [rows, nbytes // rows]
            raw = gguf.GGMLQuantizationType[type_name]
            writer.add_tensor_info(name, shape, np.dtype(np.uint8), nbytes, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(0)
    for _name, rows, cols, type_name in tensors:
        writer.write_tensor_data(_random_data(rng, rows, cols, type_name))
    writer.close()


def cached_model(cache: Path, size_mb: int) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"llama-q4_k_m-{size_mb}mb.gguf"
    if not path.exists():
        partial = path.with_suffix(".partial")
        print(f"writing {path} ...", flush=True)
        write_model(partial, size_mb)
        partial.rename(path)
    return path


def _current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fill_only(path: Path, model_to_load: Any, torch_dtype: Any, **_: Any) -> dict[str, Any]:
    """The floor: new tensors of the state dict's shapes, each filled once, no decoding.
    What fresh output memory alone costs this machine."""
    import torch

    from quantlens.files import GGUFFile
    from quantlens.integrations.transformers import _weights_map

    with GGUFFile(path) as gguf_file:
        from transformers import modeling_gguf_pytorch_utils as utils

        processor = utils.LlamaTensorProcessor(config={})
        names = _weights_map(utils, model_to_load, processor)
        tensors = {}
        for info in gguf_file.tensors:
            if info.name in names:
                tensors[names[info.name]] = torch.empty(info.shape, dtype=torch_dtype).fill_(1)
    return {"tensors": tensors}


def child(loader: str, path: Path, dtype_name: str) -> None:
    """Run one loader and print its figures as JSON."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers import modeling_gguf_pytorch_utils as hf_gguf

    from quantlens.integrations import transformers as qt

    dtype = getattr(torch, dtype_name)
    with qt.patch_transformers():  # the same config either way, read quickly
        config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    load = {
        "quantlens": qt.load_gguf_checkpoint,
        "transformers": hf_gguf.load_gguf_checkpoint,
        "fill-only": _fill_only,
    }[loader]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rss_before = _current_rss()
    start = time.perf_counter()
    tensors = load(path, return_tensors=True, model_to_load=model, torch_dtype=dtype)["tensors"]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in tensors.items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().data)
    figures = {
        "seconds": seconds,
        "peak": peak,
        "peak_before": before,
        "rss_before": rss_before,
        "output": sum(t.numel() * t.element_size() for t in tensors.values()),
        "tensors": len(tensors),
        "digest": digest.hexdigest(),
    }
    print("RESULT " + json.dumps(figures))


def run_child(loader: str, path: Path, dtype: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", loader, "--path", str(path)]
    command += ["--dtype", dtype]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            figures: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return figures
    raise RuntimeError(f"{loader} child failed:\n{done.stdout}\n{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="GGUF file size (MiB)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    parser.add_argument("--cache", type=Path, default=cache_home / "quantlens-bench")
    loaders = ["quantlens", "transformers", "fill-only"]
    parser.add_argument("--only", choices=loaders)
    parser.add_argument("--child", choices=loaders, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    dtype_name = DTYPES[args.dtype]
    if args.child:
        child(args.child, args.path, dtype_name)
        return

    path = cached_model(args.cache, args.size_mb)
    loaders = [args.only] if args.only else ["quantlens", "transformers", "fill-only"]
    results = {name: run_child(name, path, args.dtype) for name in loaders}
    mib = 2**20
    output = next(iter(results.values()))["output"]
    print(
        f"\n{path.name}: {path.stat().st_size / mib:.0f} MiB file -> "
        f"{output / mib:.0f} MiB of {dtype_name} tensors on {os.cpu_count()} CPUs\n"
    )
    header = (
        f"{'loader':<13}{'seconds':>9}{'peak MiB':>10}{'x output':>10}"
        f"{'load MiB':>10}{'x output':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        added = r["peak"] - r["rss_before"]
        print(
            f"{name:<13}{r['seconds']:>9.2f}{r['peak'] / mib:>10.0f}{r['peak'] / output:>10.2f}"
            f"{added / mib:>10.0f}{added / output:>10.2f}"
        )
    print("\n'load MiB': peak resident memory above the footprint just before loading.")
    print("'fill-only': allocating and filling the same tensors, no reading or decoding.")
    if "quantlens" in results and "transformers" in results:
        quantlens, reference = results["quantlens"], results["transformers"]
        print(f"speed: quantlens {reference['seconds'] / quantlens['seconds']:.1f}x transformers")
        same = quantlens["digest"] == reference["digest"]
        print(f"identical state dicts (names, dtypes, bits): {'yes' if same else 'NO'}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
