"""The ``quantlens`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from quantlens import convert
from quantlens.exceptions import QuantlensError
from quantlens.files import open_weights

SAMPLE_MODEL = "tiny-llama-q4_0.gguf"


def sample_model_path() -> Path:
    """The small GGUF model shipped inside the package."""
    return Path(str(resources.files("quantlens") / "data" / SAMPLE_MODEL))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantlens", description="Inspect and convert model weight files."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect",
        help="print a weight file's metadata, tensors and a summary",
        description="Print a GGUF file's metadata and tensors in gguf-dump's layout, "
        "with a summary. Without PATH, inspects the sample model shipped with quantlens.",
    )
    inspect.add_argument(
        "path", nargs="?", type=Path, help="a .gguf file (any shard of a split model)"
    )
    style = inspect.add_mutually_exclusive_group()
    style.add_argument("--json", action="store_true", help="print JSON")
    style.add_argument("--markdown", action="store_true", help="print Markdown tables")
    inspect.add_argument("--no-tensors", action="store_true", help="leave out the tensor list")
    inspect.add_argument(
        "--full-arrays", action="store_true", help="JSON: include every array element"
    )
    from quantlens import cli_resolve

    cli_resolve.add_parser(commands)
    convert.add_parser(commands)
    return parser


def _inspect(args: argparse.Namespace) -> str:
    from quantlens import report

    path = args.path if args.path is not None else sample_model_path()
    with open_weights(path) as f:
        tensors = not args.no_tensors
        if args.json:
            return report.render_json(f, tensors=tensors, full_arrays=args.full_arrays)
        if args.markdown:
            return report.render_markdown(f, tensors=tensors)
        return report.render_text(f, tensors=tensors)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "resolve":
        from quantlens import cli_resolve

        return cli_resolve.run(args)
    try:
        output = convert.run(args) if args.command == "convert" else _inspect(args)
    except (QuantlensError, OSError, ValueError) as e:
        print(f"quantlens: error: {e}", file=sys.stderr)
        return 1
    try:
        print(output)
    except BrokenPipeError:
        # `quantlens inspect | head` closed the pipe: not an error.
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
