"""``quantlens resolve``: a ``PipelineConfig`` from the command line, and what it resolves to.

Every public field of :class:`~quantlens.config.PipelineConfig` is an option, named after
the field in kebab case, typed after its annotation and described by its help metadata;
only the options given are passed on, so the dataclass's defaults stay the only defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from quantlens import config as config_module
from quantlens.config import PipelineConfig, SupportedEncoding
from quantlens.devices import parse_device_specs

__all__ = ["add_parser", "config_from_args", "resolve_summary", "run"]


def _field_type(f: dataclasses.Field[Any]) -> tuple[Any, bool]:
    """The field's type without ``None``, and whether ``None`` is allowed."""
    # The annotations are strings (postponed evaluation); the public fields' names all
    # live in quantlens.config at run time.
    annotation = eval(f.type, vars(config_module)) if isinstance(f.type, str) else f.type
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def public_fields() -> list[dataclasses.Field[Any]]:
    """The fields that become options, in declaration order."""
    return [f for f in dataclasses.fields(PipelineConfig) if not f.name.startswith("_")]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``resolve`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "resolve",
        help="resolve a model's configuration: architecture, encoding, weight files, devices",
        description="Build a PipelineConfig from these options (any field of it) and print "
        "what it resolves to: architecture, encoding, weight files with sizes, format, dtype "
        "and devices. The model may be a local folder or a Hugging Face Hub repo.",
    )
    helps = PipelineConfig.help()
    for f in public_fields():
        kind, _ = _field_type(f)
        option = "--" + f.name.replace("_", "-")
        common: dict[str, Any] = {"dest": f.name, "help": helps[f.name]}
        if f.name == "huggingface_repo_id":
            parser.add_argument(option, required=True, metavar="REPO", **common)
        elif kind is bool:
            parser.add_argument(
                option, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, **common
            )
        elif typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            metavar = "PATH" if item is Path else "DEVICE"
            parser.add_argument(
                option, action="append", default=argparse.SUPPRESS, metavar=metavar, **common
            )
        elif isinstance(kind, type) and issubclass(kind, Enum):
            metavar = (
                "ENCODING"
                if kind is SupportedEncoding
                else "{" + ",".join(str(m.value) for m in kind) + "}"
            )
            parser.add_argument(option, default=argparse.SUPPRESS, metavar=metavar, **common)
        else:
            parser.add_argument(
                option,
                type=kind,
                default=argparse.SUPPRESS,
                metavar=f.name.split("_")[-1].upper(),
                **common,
            )
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The ``PipelineConfig`` the parsed options describe."""
    given = {f.name: getattr(args, f.name) for f in public_fields() if hasattr(args, f.name)}
    if "device_specs" in given:
        given["device_specs"] = parse_device_specs(given["device_specs"])
    return PipelineConfig(**given)


def resolve_summary(config: PipelineConfig) -> dict[str, Any]:
    """Resolve ``config`` and describe the result as plain data."""
    config.resolve()
    sizes = config.weight_file_sizes()
    known = [size for _, size in sizes]
    encoding = config.quantization_encoding
    return {
        "repo": config.huggingface_repo_id,
        "repo_type": config.repo_type.value,
        "weights_repo": config.weights_repo_id,
        "architecture": config.architecture,
        "engine": config.engine.value if config.engine is not None else None,
        "encoding": encoding.name if encoding is not None else None,
        "format": config.weights_format.value,
        "dtype": str(config.dtype).removeprefix("torch.") if encoding is not None else None,
        "devices": [str(device) for device in config.devices],
        "weight_files": [{"path": path.as_posix(), "size": size} for path, size in sizes],
        "total_size": None if None in known else sum(s for s in known if s is not None),
    }


def _size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def render_text(summary: dict[str, Any]) -> str:
    files = summary["weight_files"]
    width = max((len(f["path"]) for f in files), default=0)
    lines = [
        f"repo          {summary['repo']} ({summary['repo_type']})",
        f"architecture  {summary['architecture'] or 'unknown (no config.json)'}",
        f"encoding      {summary['encoding'] or 'unknown'}",
        f"format        {summary['format']}",
        f"dtype         {summary['dtype'] or 'unknown'}",
        f"devices       {', '.join(summary['devices'])}",
        f"weight files  {len(files)}, {_size(summary['total_size'])}"
        + (
            f" from {summary['weights_repo']}" if summary["weights_repo"] != summary["repo"] else ""
        ),
    ]
    lines += [f"  {f['path']:<{width}}  {_size(f['size'])}" for f in files]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``quantlens resolve``: 0 on success, 1 (with a one-line message) on errors."""
    try:
        summary = resolve_summary(config_from_args(args))
    except Exception as error:  # any failure is reported in one line, not a traceback
        text = str(error).strip() or type(error).__name__
        print(f"quantlens: error: {text.splitlines()[0]}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2) if args.json else render_text(summary))
    return 0
