"""Open, read and decode every tensor of each file named on stdin, under a memory cap.

Run by ``test_fuzz_mutations`` in a child process, so that a crash, a hang or a runaway
allocation on one crafted file is seen as such instead of taking pytest down. Prints one
JSON line when a case starts and one when it ends; the parent reads them to know which
case was running if the process dies.

Usage: python fuzz_child.py MEMORY_LIMIT_BYTES < paths (one per line)
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> None:
    cap = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import quantlens

    def emit(**fields: object) -> None:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()

    for i, line in enumerate(sys.stdin):
        path = line.rstrip("\n")
        emit(event="start", case=i)
        started = time.monotonic()
        try:
            outcome = exercise(path)
        except (quantlens.QuantlensError, OSError) as e:
            outcome = f"typed:{type(e).__name__}"
        except Exception as e:
            outcome = f"unexpected:{type(e).__name__}: {e}"
        emit(event="end", case=i, outcome=outcome, seconds=time.monotonic() - started)


def exercise(path: str) -> str:
    """Everything a user would do with the file: metadata, every tensor's bytes, every
    tensor decoded (GGUF) or read as an array."""
    import quantlens

    with quantlens.open_weights(path) as f:
        meta = f.metadata
        for key in list(meta)[:200]:
            value = meta[key]
            if isinstance(value, quantlens.MetadataArray):
                value[: min(len(value), 64)]
        for t in f.tensors:
            f.tensor_bytes(t.name)
            f.get_tensor(t.name)
    return "ok"


if __name__ == "__main__":
    main()
