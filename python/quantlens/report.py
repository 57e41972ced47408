"""What ``quantlens inspect`` prints: a weight file's header, tensors and a summary, as
text (gguf-dump's layout for GGUF), as Markdown, or as JSON."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from quantlens.files import GGUFFile, MetadataArray, WeightFile

# Array elements shown before "..." in text and Markdown, and kept in JSON by default.
ARRAY_HEAD = 6
STRING_WIDTH = 60


@dataclass
class TypeShare:
    """How much of a model one ggml type holds."""

    tensors: int = 0
    parameters: int = 0
    nbytes: int = 0


@dataclass
class Summary:
    """Totals over a model's tensors."""

    tensors: int
    parameters: int
    tensor_bytes: int
    file_bytes: int
    by_type: dict[str, TypeShare] = field(default_factory=dict)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.tensor_bytes / self.parameters if self.parameters else math.nan


def summarize(f: WeightFile[Any]) -> Summary:
    summary = Summary(len(f.tensors), 0, 0, f.file_size)
    for t in f.tensors:
        n_elements = math.prod(t.shape)
        share = summary.by_type.setdefault(t.dtype, TypeShare())
        share.tensors += 1
        share.parameters += n_elements
        share.nbytes += t.nbytes or 0
        summary.parameters += n_elements
        summary.tensor_bytes += t.nbytes or 0
    summary.by_type = dict(sorted(summary.by_type.items(), key=lambda kv: -kv[1].nbytes))
    return summary


def _pretty_type(f: GGUFFile, key: str, value: Any) -> str:
    type_name = f.metadata.types[key]
    depth = 0
    while isinstance(value, MetadataArray):
        depth += 1
        type_name = value.element_type
        value = value[0] if len(value) and value.element_type == "ARRAY" else None
    return "[" * depth + type_name + "]" * depth


def _short(value: Any) -> str:
    if isinstance(value, MetadataArray):
        head = [_plain(v) for v in value[:ARRAY_HEAD]]
        text = repr(head)
        return text[:-1] + ", ...]" if len(value) > ARRAY_HEAD else text
    if isinstance(value, str):
        return repr(value if len(value) <= STRING_WIDTH else value[: STRING_WIDTH - 3] + "...")
    return str(value)


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, MetadataArray) else value


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _human_count(n: int) -> str:
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _header_rows(f: GGUFFile) -> list[tuple[str, int, str, str]]:
    """(type, count, key, value) rows, starting with the GGUF.* pseudo-keys gguf-dump shows."""
    rows = [
        ("UINT32", 1, "GGUF.version", str(f.version)),
        ("UINT64", 1, "GGUF.tensor_count", str(len(f.tensors))),
        ("UINT64", 1, "GGUF.kv_count", str(len(f.metadata))),
    ]
    for key, value in f.metadata.items():
        count = len(value) if isinstance(value, MetadataArray) else 1
        rows.append((_pretty_type(f, key, value), count, key, _short(value)))
    return rows


def _padded_ne(ne: tuple[int, ...] | list[int]) -> list[int]:
    return list(ne) + [1] * (4 - len(ne))


def _summary_lines(s: Summary, f: WeightFile[Any]) -> Iterator[str]:
    yield f"* Parameters: {s.parameters:,} ({_human_count(s.parameters)})"
    yield f"* Tensor data: {_human_bytes(s.tensor_bytes)}; files: {_human_bytes(s.file_bytes)}"
    yield f"* Bits per weight: {s.bits_per_weight:.2f}"
    if isinstance(f, GGUFFile) and f.file_type:
        yield f"* File type: {f.file_type}"
    if len(f.paths) > 1:
        yield f"* Files: {len(f.paths)}"
    yield "* Tensor types:"
    for name, share in s.by_type.items():
        pct = 100 * share.nbytes / s.tensor_bytes if s.tensor_bytes else 0.0
        yield (
            f"  {name:8} {share.tensors:6} tensors {_human_count(share.parameters):>9} params "
            f"{_human_bytes(share.nbytes):>11} ({pct:5.1f}% of bytes)"
        )


def render_text(f: WeightFile[Any], *, tensors: bool = True) -> str:
    if not isinstance(f, GGUFFile):
        return _render_other_text(f, tensors=tensors)
    host = sys.byteorder.upper()
    lines = [
        f"* File is {f.endianness.upper()} endian, script is running on a {host} endian host.",
        f"* Dumping {len(f.metadata) + 3} key/value pair(s)",
    ]
    for n, (type_name, count, key, value) in enumerate(_header_rows(f), 1):
        lines.append(f"  {n:5}: {type_name:10} | {count:8} | {key} = {value}")
    if tensors:
        lines.append(f"* Dumping {len(f.tensors)} tensor(s)")
        for n, t in enumerate(f.tensors, 1):
            dims = ", ".join(f"{d:5}" for d in _padded_ne(t.ne))
            lines.append(f"  {n:5}: {t.n_elements:10} | {dims} | {t.type_name:7} | {t.name}")
    lines.extend(_summary_lines(summarize(f), f))
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(f: WeightFile[Any], *, tensors: bool = True) -> str:
    if not isinstance(f, GGUFFile):
        return _render_other_markdown(f, tensors=tensors)
    lines = [f"# {f.path.name}", "", "## Key/value metadata", ""]
    lines += ["| # | key | type | count | value |", "|--:|:--|:--|--:|:--|"]
    for n, (type_name, count, key, value) in enumerate(_header_rows(f), 1):
        lines.append(f"| {n} | {key} | {type_name} | {count} | {_md_escape(value)} |")
    if tensors:
        lines += ["", "## Tensors", ""]
        lines += [
            "| # | name | type | shape (ne) | elements | bytes |",
            "|--:|:--|:--|:--|--:|--:|",
        ]
        for n, t in enumerate(f.tensors, 1):
            dims = " x ".join(str(d) for d in t.ne)
            lines.append(
                f"| {n} | {_md_escape(t.name)} | {t.type_name} | {dims} | "
                f"{t.n_elements:,} | {t.nbytes if t.nbytes is not None else '?'} |"
            )
    lines += ["", "## Summary", ""]
    lines += [line.replace("* ", "- ", 1) for line in _summary_lines(summarize(f), f)]
    return "\n".join(lines)


def _json_value(value: Any, full_arrays: bool) -> Any:
    if isinstance(value, MetadataArray):
        items = value[:] if full_arrays else value[:ARRAY_HEAD]
        return [_json_value(v, full_arrays) for v in items]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        # Keep invalid UTF-8 (decoded as lone surrogates) printable in JSON.
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def to_json_dict(
    f: WeightFile[Any], *, tensors: bool = True, full_arrays: bool = False
) -> dict[str, Any]:
    if not isinstance(f, GGUFFile):
        return _other_json_dict(f, tensors=tensors)
    metadata: dict[str, Any] = {}
    for key, value in f.metadata.items():
        entry: dict[str, Any] = {"type": f.metadata.types[key], "offset": f.metadata.offsets[key]}
        if isinstance(value, MetadataArray):
            entry["element_type"] = value.element_type
            entry["length"] = len(value)
        entry["value"] = _json_value(value, full_arrays)
        metadata[key] = entry
    s = summarize(f)
    result: dict[str, Any] = {
        "path": str(f.path),
        "format": "gguf",
        "version": f.version,
        "endianness": f.endianness,
        "alignment": f.alignment,
        "data_offset": f.data_offset,
        "file_type": f.file_type,
        "split": None
        if f.split is None
        else {
            "count": f.split.count,
            "tensors_count": f.split.tensors_count,
            "paths": [str(p) for p in f.split.paths],
        },
        "metadata": metadata,
        "summary": {
            "tensors": s.tensors,
            "parameters": s.parameters,
            "tensor_bytes": s.tensor_bytes,
            "file_bytes": s.file_bytes,
            "bits_per_weight": s.bits_per_weight if s.parameters else None,
            "by_type": {k: vars(v) for k, v in s.by_type.items()},
        },
    }
    if tensors:
        result["tensors"] = [
            {
                "name": t.name,
                "type": t.type_name,
                "type_id": t.type_id,
                "shape": list(t.shape),
                "ne": list(t.ne),
                "n_elements": t.n_elements,
                "nbytes": t.nbytes,
                "offset": t.offset,
                "shard": t.shard,
            }
            for t in f.tensors
        ]
    return result


def render_json(f: WeightFile[Any], *, tensors: bool = True, full_arrays: bool = False) -> str:
    return json.dumps(to_json_dict(f, tensors=tensors, full_arrays=full_arrays), indent=2)


# -- safetensors and PyTorch files ----------------------------------------------------------


def _render_other_text(f: WeightFile[Any], *, tensors: bool) -> str:
    lines = [f"* {f.format} model in {len(f.paths)} file(s)"]
    lines.append(f"* Dumping {len(f.metadata)} metadata key(s)")
    for n, (key, value) in enumerate(f.metadata.items(), 1):
        lines.append(f"  {n:5}: {key} = {_short(value)}")
    if tensors:
        lines.append(f"* Dumping {len(f.tensors)} tensor(s)")
        for n, t in enumerate(f.tensors, 1):
            shape = ", ".join(f"{d:5}" for d in t.shape)
            lines.append(f"  {n:5}: {math.prod(t.shape):10} | {shape} | {t.dtype:7} | {t.name}")
    lines.extend(_summary_lines(summarize(f), f))
    return "\n".join(lines)


def _render_other_markdown(f: WeightFile[Any], *, tensors: bool) -> str:
    lines = [f"# {f.path.name}", "", f"{f.format} model in {len(f.paths)} file(s).", ""]
    lines += ["## Metadata", "", "| key | value |", "|:--|:--|"]
    lines += [f"| {_md_escape(k)} | {_md_escape(_short(v))} |" for k, v in f.metadata.items()]
    if tensors:
        lines += ["", "## Tensors", ""]
        lines += ["| # | name | dtype | shape | elements | bytes |", "|--:|:--|:--|:--|--:|--:|"]
        for n, t in enumerate(f.tensors, 1):
            shape = " x ".join(str(d) for d in t.shape)
            lines.append(
                f"| {n} | {_md_escape(t.name)} | {t.dtype} | {shape} | "
                f"{math.prod(t.shape):,} | {t.nbytes} |"
            )
    lines += ["", "## Summary", ""]
    lines += [line.replace("* ", "- ", 1) for line in _summary_lines(summarize(f), f)]
    return "\n".join(lines)


def _other_json_dict(f: WeightFile[Any], *, tensors: bool) -> dict[str, Any]:
    s = summarize(f)
    result: dict[str, Any] = {
        "path": str(f.path),
        "format": f.format,
        "paths": [str(p) for p in f.paths],
        "metadata": dict(f.metadata),
        "summary": {
            "tensors": s.tensors,
            "parameters": s.parameters,
            "tensor_bytes": s.tensor_bytes,
            "file_bytes": s.file_bytes,
            "by_dtype": {k: vars(v) for k, v in s.by_type.items()},
        },
    }
    if tensors:
        result["tensors"] = [
            {
                "name": t.name,
                "dtype": t.dtype,
                "shape": list(t.shape),
                "nbytes": t.nbytes,
                "offset": t.offset,
            }
            for t in f.tensors
        ]
    return result
