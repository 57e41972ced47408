"""Write tests/data/quantize_golden.npz: ggml's quantized bytes for fixed inputs.

tests/test_quantize.py compares quantlens against ggml's ``ggml_quantize_chunk`` directly
when llama-cpp-python (which bundles libggml) is installed; where it is not, it compares
against these recorded outputs instead.

Entries: ``x/<case>`` float32 rows, ``imatrix/<case>`` float32 importance weights, and
``q/<TYPE>/<case>`` and ``qi/<TYPE>/<case>`` ggml's bytes without and with the importance
matrix. Types are every type quantlens quantizes.

Run from the project root: python3 scripts/make_quantize_golden.py (needs llama-cpp-python).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benches"), str(ROOT / "tests")]

from ggml_ref import Ggml  # noqa: E402
from gguf import GGML_QUANT_SIZES  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from quantize_inputs import FINITE_KINDS, KINDS, importance, rows  # noqa: E402

TYPES = [
    T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
    T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
    T.IQ4_NL, T.IQ4_XS,
]  # fmt: skip
OUT = ROOT / "tests/data/quantize_golden.npz"

# (name, seed, rows, weights per row, kinds of 32-weight groups)
CASES = [
    ("normal", 1, 3, 512, ("normal",)),
    ("mixed", 2, 5, 768, FINITE_KINDS),
    ("mixed_wide", 3, 2, 2048, FINITE_KINDS),
    ("outliers", 4, 4, 256, ("outlier", "normal")),
    ("flat", 5, 2, 512, ("zero", "constant")),
    ("extremes", 6, 3, 256, ("subnormal", "huge", "tiny")),
    ("nonfinite", 7, 3, 512, KINDS),
]


def main() -> None:
    ggml = Ggml()
    arrays: dict[str, np.ndarray] = {}
    for name, seed, n_rows, n_per_row, kinds in CASES:
        x = rows(seed, n_rows, n_per_row, kinds)
        w = importance(seed + 100, n_per_row, zeros=seed % 2 == 0)
        arrays[f"x/{name}"] = x
        arrays[f"imatrix/{name}"] = w
        for t in TYPES:
            block, size = GGML_QUANT_SIZES[t]
            arrays[f"q/{t.name}/{name}"] = ggml.quantize(int(t), x, size, block)
            arrays[f"qi/{t.name}/{name}"] = ggml.quantize(int(t), x, size, block, w)
    np.savez_compressed(OUT, **arrays)  # type: ignore[arg-type]
    print(f"wrote {len(arrays)} arrays to {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
