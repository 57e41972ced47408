"""``quantlens convert``: safetensors or PyTorch checkpoints to GGUF (plain or quantized,
with llama-quantize's per-tensor mixes), and GGUF back to safetensors.

To GGUF: for a llama-family model (``config.json`` beside the weights with ``model_type``
``llama`` or ``mistral``), tensor names are mapped with gguf-py's own name table, Q and K
projections are permuted as llama.cpp's ``convert_hf_to_gguf.py`` does, and the
``llama.*`` hyperparameters and ``general.*`` keys are written. No tokenizer is written
(llama.cpp needs one to run the model; its converter adds it). Any other model keeps its
tensor names and gets only ``general.*`` keys. Tensor types follow :mod:`quantlens.quant_mix`.

To safetensors: every tensor of a GGUF model (split or not) is dequantized to ``dtype``
(integer tensors stay integers) under its GGUF name.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._ggml_encode import PLAIN_NUMPY, encode
from quantlens.files import GGUFFile, SafetensorsFile, WeightFile, open_weights
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType
from quantlens.gguf_writer import GGUFValueType, GGUFWriter
from quantlens.quant_mix import choose_types, file_type

__all__ = [
    "ConversionPlan",
    "PlannedTensor",
    "add_parser",
    "convert_to_gguf",
    "convert_to_safetensors",
    "parse_size",
    "plan_gguf",
    "run",
]

Q = GGMLQuantizationType
V = GGUFValueType
LLAMA_MODEL_TYPES = ("llama", "mistral")
#: Weights converted per piece, so that a big tensor never needs a float32 copy of itself.
_CHUNK_WEIGHTS = 16 << 20
_INT_TYPES = {"int8": Q.I8, "int16": Q.I16, "int32": Q.I32, "int64": Q.I64}
# Unsigned integers and booleans widen to the next signed type, losslessly.
_WIDENED = {"bool": Q.I8, "uint8": Q.I16, "uint16": Q.I32, "uint32": Q.I64}


def parse_size(text: str) -> int:
    """``2G``, ``500M``, ``100K`` or a byte count, in powers of 1000 as gguf-split reads them."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text, re.IGNORECASE)
    if found is None:
        raise ValueError(f"not a size: {text!r} (try 2G, 500M or a number of bytes)")
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[found.group(2).upper()]
    size = int(float(found.group(1)) * scale)
    if size <= 0:
        raise ValueError(f"size must be above zero: {text!r}")
    return size


@dataclass
class PlannedTensor:
    """One tensor of the output: where it comes from and what it becomes."""

    source: str
    name: str
    shape: tuple[int, ...]
    source_dtype: str
    ggml_type: GGMLQuantizationType
    nbytes: int
    #: Heads to permute over (llama Q/K projections), or ``None``.
    permute_heads: int | None = None


@dataclass
class ConversionPlan:
    """What converting to GGUF will write."""

    tensors: list[PlannedTensor]
    metadata: list[tuple[str, Any, GGUFValueType]]
    file_type: str
    arch: str | None
    notes: list[str] = field(default_factory=list)
    output_paths: list[Path] = field(default_factory=list)
    output_sizes: list[int] = field(default_factory=list)

    def describe(self) -> str:
        """The plan as text: one line per tensor, then the files and total size."""
        width = max([len(t.name) for t in self.tensors] + [6])
        lines = [f"{'tensor':<{width}}  {'shape':<22} {'source':<8} {'type':<7} {'bytes':>14}"]
        for t in self.tensors:
            shape = "x".join(str(d) for d in t.shape)
            lines.append(
                f"{t.name:<{width}}  {shape:<22} {t.source_dtype:<8} "
                f"{t.ggml_type.name:<7} {t.nbytes:>14,}"
            )
        total = sum(self.output_sizes)
        lines.append(f"{len(self.tensors)} tensors, {self.file_type}; output {total:,} bytes in:")
        files = zip(self.output_paths, self.output_sizes, strict=True)
        lines += [f"  {path} ({size:,} bytes)" for path, size in files]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _config(src: Path) -> dict[str, Any] | None:
    folder = src if src.is_dir() else src.parent
    path = folder / "config.json"
    if not path.is_file():
        return None
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, dict) else None


def _rope_theta(config: dict[str, Any]) -> float | None:
    theta = config.get("rope_theta")
    params = config.get("rope_parameters")
    if theta is None and isinstance(params, dict):
        theta = params.get("rope_theta")
    return None if theta is None else float(theta)


def _llama_metadata(
    config: dict[str, Any], notes: list[str]
) -> list[tuple[str, Any, GGUFValueType]]:
    """The ``llama.*`` keys convert_hf_to_gguf.py writes from a llama config."""
    arch = "llama"
    n_head = int(config["num_attention_heads"])
    head_dim = config.get("head_dim") or int(config["hidden_size"]) // n_head
    keys: list[tuple[str, Any, GGUFValueType]] = [
        (f"{arch}.vocab_size", config.get("vocab_size"), V.UINT32),
        (f"{arch}.context_length", config.get("max_position_embeddings"), V.UINT32),
        (f"{arch}.embedding_length", config.get("hidden_size"), V.UINT32),
        (f"{arch}.block_count", config.get("num_hidden_layers"), V.UINT32),
        (f"{arch}.feed_forward_length", config.get("intermediate_size"), V.UINT32),
        (f"{arch}.rope.dimension_count", head_dim, V.UINT32),
        (f"{arch}.attention.head_count", n_head, V.UINT32),
        (f"{arch}.attention.head_count_kv", config.get("num_key_value_heads"), V.UINT32),
        (f"{arch}.rope.freq_base", _rope_theta(config), V.FLOAT32),
        (f"{arch}.attention.layer_norm_rms_epsilon", config.get("rms_norm_eps"), V.FLOAT32),
    ]
    if config.get("head_dim") is not None:
        keys.append((f"{arch}.attention.key_length", head_dim, V.UINT32))
        keys.append((f"{arch}.attention.value_length", head_dim, V.UINT32))
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
    rope_type = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else None
    if rope_type == "linear":
        keys.append((f"{arch}.rope.scaling.type", "linear", V.STRING))
        keys.append((f"{arch}.rope.scaling.factor", float(scaling["factor"]), V.FLOAT32))
    elif rope_type not in (None, "default"):
        notes.append(f"rope scaling {rope_type!r} is not written")
    return [k for k in keys if k[1] is not None]


def _name_mapper(config: dict[str, Any] | None, keep_names: bool, notes: list[str]) -> Any:
    """gguf-py's tensor name map for a llama-family config, else ``None``."""
    model_type = (config or {}).get("model_type")
    if keep_names or model_type not in LLAMA_MODEL_TYPES:
        reason = "--keep-names" if keep_names else f"model_type {model_type!r} is not llama"
        notes.append(f"tensor names kept as they are ({reason}); no tokenizer written")
        return None
    try:
        import gguf
    except ImportError as e:
        raise ImportError(
            "mapping llama tensor names needs gguf-py (pip install gguf); "
            "or pass --keep-names to keep the names as they are"
        ) from e
    assert config is not None
    notes.append("llama tensor names mapped with gguf-py; Q/K permuted; no tokenizer written")
    return gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, int(config["num_hidden_layers"]))


def _source_dtype(weights: WeightFile[Any], name: str) -> str:
    info = weights.tensor(name)
    numpy_name = getattr(info, "numpy_dtype", None)
    return str(numpy_name or info.dtype)


def plan_gguf(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    type_label: str = "F16",
    *,
    split_max_size: int | None = None,
    split_max_tensors: int | None = None,
    pure: bool = False,
    keep_names: bool = False,
) -> ConversionPlan:
    """What :func:`convert_to_gguf` would write, without writing anything."""
    src = Path(src)
    ft = file_type(type_label)
    config = _config(src)
    notes: list[str] = []
    mapper = _name_mapper(config, keep_names, notes)
    with open_weights(src) as weights:
        entries: list[PlannedTensor] = []
        for info in weights.tensors:
            if info.name.endswith(".rotary_emb.inv_freq"):
                continue
            name = info.name
            shape = tuple(int(d) for d in info.shape) or (1,)
            if len(shape) > 4:
                raise ValueError(
                    f"{src}: tensor {name!r} has {len(shape)} dimensions; GGUF holds 4"
                )
            heads = None
            if mapper is not None:
                assert config is not None
                mapped = mapper.get_name(name, try_suffixes=(".weight", ".bias"))
                if mapped is None:
                    notes.append(f"no GGUF name for {name!r}; kept as it is")
                else:
                    heads = _permute_heads(name, config)
                    name = mapped
            source_dtype = _source_dtype(weights, info.name)
            entries.append(PlannedTensor(info.name, name, shape, source_dtype, Q.F32, 0, heads))
    is_float = [_is_float(t.source_dtype) for t in entries]
    float_entries = [(t.name, t.shape) for t, f in zip(entries, is_float, strict=True) if f]
    extra: dict[str, int] = {}
    if config is not None and mapper is not None:
        extra = {
            "n_layer": int(config["num_hidden_layers"]),
            "n_head": int(config["num_attention_heads"]),
            "n_head_kv": int(config.get("num_key_value_heads") or config["num_attention_heads"]),
        }
    chosen = iter(choose_types(float_entries, ft.label, pure=pure, **extra))
    for t, f in zip(entries, is_float, strict=True):
        if f:
            t.ggml_type = next(chosen)
        else:
            t.ggml_type = _integer_type(src, t)
        block, size = GGML_QUANT_SIZES[t.ggml_type]
        t.nbytes = int(np.prod(t.shape, dtype=np.int64)) // block * size
    arch = "llama" if mapper is not None else None
    metadata = _general_metadata(src, config, ft.id, arch)
    if mapper is not None and config is not None:
        metadata += _llama_metadata(config, notes)
    plan = ConversionPlan(entries, metadata, ft.label, arch, notes)
    with _declared_writer(plan, dst, split_max_size, split_max_tensors) as writer:
        plan.output_paths = writer.output_paths
        plan.output_sizes = writer.output_sizes
        writer.abort()
    return plan


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat")) or dtype in ("F32", "F16", "BF16", "F64")


def _integer_type(src: Path, t: PlannedTensor) -> GGMLQuantizationType:
    found = _INT_TYPES.get(t.source_dtype) or _WIDENED.get(t.source_dtype)
    if found is None:
        from quantlens.exceptions import UnsupportedTypeError

        raise UnsupportedTypeError(
            f"{src}: tensor {t.source!r} is {t.source_dtype}, which GGUF cannot hold",
            path=src,
            tensor=t.source,
        )
    return found


def _permute_heads(hf_name: str, config: dict[str, Any]) -> int | None:
    """The head count llama.cpp permutes Q or K projections over (``None`` for others)."""
    n_head = int(config["num_attention_heads"])
    if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
        return n_head
    if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
        return int(config.get("num_key_value_heads") or n_head)
    return None


def permute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a Q/K projection from HF's rotary layout (halves) to the
    interleaved one GGUF llama models use, as ``convert_hf_to_gguf.py`` does."""
    shape = weights.shape
    split = weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
    return split.swapaxes(1, 2).reshape(shape)


def _general_metadata(
    src: Path, config: dict[str, Any] | None, file_type_id: int, arch: str | None
) -> list[tuple[str, Any, GGUFValueType]]:
    name = (config or {}).get("_name_or_path") or (src.name if src.is_dir() else src.stem)
    return [
        ("general.architecture", arch or "unknown", V.STRING),
        ("general.name", str(name), V.STRING),
        ("general.file_type", file_type_id, V.UINT32),
        ("general.quantization_version", 2, V.UINT32),
    ]


def _declared_writer(
    plan: ConversionPlan,
    dst: str | os.PathLike[str],
    split_max_size: int | None,
    split_max_tensors: int | None,
) -> GGUFWriter:
    writer = GGUFWriter(dst, split_max_size=split_max_size, split_max_tensors=split_max_tensors)
    for key, value, value_type in plan.metadata:
        writer.add_metadata(key, value, value_type)
    for t in plan.tensors:
        writer.add_tensor_info(t.name, t.shape, t.ggml_type)
    return writer


def _chunks(array: np.ndarray) -> Iterator[np.ndarray]:
    """Whole rows of ``array`` (as 2-D), a few million weights at a time."""
    rows = array.reshape(-1, array.shape[-1] if array.ndim else 1)
    step = max(1, _CHUNK_WEIGHTS // max(1, rows.shape[1]))
    for start in range(0, rows.shape[0], step):
        yield rows[start : start + step]


def convert_to_gguf(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    type_label: str = "F16",
    *,
    split_max_size: int | None = None,
    split_max_tensors: int | None = None,
    pure: bool = False,
    keep_names: bool = False,
    threads: int | None = None,
    progress: bool = False,
) -> list[Path]:
    """Convert a safetensors model or PyTorch checkpoint at ``src`` to GGUF at ``dst``.
    Returns the files written (several when split)."""
    plan = plan_gguf(
        src,
        dst,
        type_label,
        split_max_size=split_max_size,
        split_max_tensors=split_max_tensors,
        pure=pure,
        keep_names=keep_names,
    )
    advance, finish = _progress_bar(sum(t.nbytes for t in plan.tensors), Path(dst).name, progress)
    try:
        with (
            open_weights(src) as weights,
            _declared_writer(plan, dst, split_max_size, split_max_tensors) as writer,
        ):
            for t in plan.tensors:
                array = _source_array(weights, t.source).reshape(t.shape)
                if t.permute_heads is not None:
                    array = permute_qk(array, t.permute_heads)
                for chunk in _chunks(array):
                    data = encode(chunk, t.ggml_type, threads)
                    writer.write_tensor_data(t.name, data)
                    advance(data.size)
            paths = writer.output_paths
    finally:
        finish()
    return paths


def _source_array(weights: WeightFile[Any], name: str) -> np.ndarray:
    """Tensor ``name``: a zero-copy view of the mapped file where it is stored contiguous in
    safetensors (always little-endian), else a copy."""
    info = weights.tensor(name)
    if isinstance(weights, SafetensorsFile) and info.contiguous and info.numpy_dtype:
        from quantlens._slice import numpy_dtype

        raw = weights.tensor_bytes(name)
        return raw.view(numpy_dtype(info.numpy_dtype)).reshape(info.shape)
    array: np.ndarray = weights.get_tensor(name)
    return array


def _progress_bar(
    total: int, name: str, enabled: bool
) -> tuple[Callable[[int], None], Callable[[], None]]:
    import importlib

    try:
        # Optional: without tqdm installed, conversion runs without a bar.
        tqdm = importlib.import_module("tqdm").tqdm if enabled else None
    except ImportError:
        tqdm = None
    if tqdm is None:
        return (lambda _n: None), (lambda: None)
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name)
    return bar.update, bar.close


_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def convert_to_safetensors(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    dtype: str = "f32",
    *,
    threads: int | None = None,
    progress: bool = False,
    dry_run: bool = False,
) -> str | Path:
    """Dequantize every tensor of the GGUF model at ``src`` to ``dtype`` (``f32``, ``f16``
    or ``bf16``; integer tensors keep their type) into a safetensors file at ``dst``.
    With ``dry_run``, returns the plan as text and writes nothing."""
    from quantlens.safetensors_writer import DTYPES, SafetensorsWriter

    element = _DTYPES.get(dtype.lower(), dtype.lower())
    if element not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype must be f32, f16 or bf16, not {dtype!r}")
    with GGUFFile(src) as model:
        layout = []
        for info in model.tensors:
            own = PLAIN_NUMPY.get(GGMLQuantizationType(info.type_id))
            kind = own if own is not None and own.startswith("int") else element
            layout.append((info.name, info.type_name, kind, tuple(info.shape)))
        if dry_run:
            lines = [f"{n}  {'x'.join(map(str, s))}  {t} -> {k}" for n, t, k, s in layout]
            total = sum(int(np.prod(s, dtype=np.int64)) * DTYPES[k][1] for _, _, k, s in layout)
            lines.append(f"{len(layout)} tensors; output about {total:,} bytes: {dst}")
            return "\n".join(lines)
        total = sum(int(np.prod(s, dtype=np.int64)) * DTYPES[k][1] for _, _, k, s in layout)
        advance, finish = _progress_bar(total, Path(dst).name, progress)
        try:
            with SafetensorsWriter(dst, {"format": "pt"}) as out:
                for name, _, kind, shape in layout:
                    out.add_tensor_info(name, kind, shape)
                for name, _, kind, shape in layout:
                    if kind.startswith("int"):
                        array = np.asarray(model.get_slice(name)[...])
                    else:
                        array = model.get_tensor(name, kind, threads=threads)
                    out.write_tensor(name, array.reshape(shape))
                    advance(array.nbytes)
        finally:
            finish()
    return Path(dst)


def add_parser(commands: Any) -> None:
    """Register ``convert`` on the CLI's subcommands."""
    parser = commands.add_parser(
        "convert",
        help="convert safetensors/PyTorch weights to GGUF, or GGUF to safetensors",
        description="Convert a safetensors model (file, sharded folder or index.json) or a "
        "PyTorch checkpoint to GGUF, quantizing with llama-quantize's per-tensor mixes; or "
        "a GGUF model to safetensors, dequantized.",
    )
    parser.add_argument("src", type=Path, help="the model to convert")
    parser.add_argument("dst", type=Path, help="the file to write (.gguf or .safetensors)")
    parser.add_argument(
        "--type",
        default="F16",
        help="GGUF file type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, "
        "Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS (default F16)",
    )
    parser.add_argument(
        "--dtype", default="f32", help="safetensors output: f32 (default), f16 or bf16"
    )
    parser.add_argument("--split-max-size", type=parse_size, help="most bytes per GGUF file (2G)")
    parser.add_argument("--split-max-tensors", type=int, help="most tensors per GGUF file")
    parser.add_argument("--threads", type=int, help="quantization threads")
    parser.add_argument("--pure", action="store_true", help="no per-tensor mixes")
    parser.add_argument("--keep-names", action="store_true", help="do not map names to GGUF's")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> str:
    """Run ``quantlens convert``; returns what to print."""
    from quantlens import _core

    src: Path = args.src
    progress = not args.no_progress and sys.stderr.isatty()
    to_gguf = src.is_dir() or _core.sniff_file(src)[0] != "gguf"
    wanted = {".gguf": True, ".safetensors": False}.get(Path(args.dst).suffix.lower())
    if wanted is not None and wanted != to_gguf:
        made = "GGUF" if to_gguf else "safetensors"
        raise ValueError(
            f"{src} converts to {made}, but {args.dst} is named for the other format "
            "(quantlens converts safetensors/PyTorch to GGUF and GGUF to safetensors)"
        )
    if not to_gguf:
        result = convert_to_safetensors(
            src, args.dst, args.dtype, threads=args.threads, progress=progress, dry_run=args.dry_run
        )
        return result if isinstance(result, str) else f"wrote {result}"
    options: dict[str, Any] = {
        "split_max_size": args.split_max_size,
        "split_max_tensors": args.split_max_tensors,
        "pure": args.pure,
        "keep_names": args.keep_names,
    }
    if args.dry_run:
        return plan_gguf(src, args.dst, args.type, **options).describe()
    paths = convert_to_gguf(
        src, args.dst, args.type, threads=args.threads, progress=progress, **options
    )
    return "\n".join(f"wrote {p}" for p in paths)
