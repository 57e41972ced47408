"""Float rows that stress ggml's quantizers, shared by the tests and the golden-data script.

Every 32-weight group gets its own character: normal values at some scale, an outlier,
zeros, a constant, subnormals, values near the float32 limit, or (when asked) NaN and
infinities among normal values.
"""

from __future__ import annotations

import numpy as np

KINDS = (
    "normal",
    "outlier",
    "zero",
    "constant",
    "subnormal",
    "huge",
    "tiny",
    "nonfinite",
)
FINITE_KINDS = KINDS[:-1]


def group(rng: np.random.Generator, kind: str) -> np.ndarray:
    """32 float32 weights of one kind."""
    x = rng.standard_normal(32).astype(np.float32)
    if kind == "normal":
        return (x * np.float32(10.0 ** rng.integers(-8, 9))).astype(np.float32)
    if kind == "outlier":
        x[rng.integers(0, 32)] = np.float32(rng.choice([-1, 1]) * 10.0 ** rng.integers(1, 6))
        return x
    if kind == "zero":
        return np.zeros(32, np.float32)
    if kind == "constant":
        return np.full(32, np.float32(rng.standard_normal() * 10.0 ** rng.integers(-3, 4)))
    if kind == "subnormal":
        return (x * np.float32(1e-40)).astype(np.float32)
    if kind == "huge":
        return (x * np.float32(1e37)).astype(np.float32)
    if kind == "tiny":
        return (x * np.float32(1e-18)).astype(np.float32)
    if kind == "nonfinite":
        special = np.array([np.nan, np.inf, -np.inf, -np.nan], np.float32)
        where = rng.integers(0, 32, size=rng.integers(1, 4))
        x[where] = rng.choice(special, size=where.size)
        return x
    raise ValueError(kind)


def rows(seed: int, n_rows: int, n_per_row: int, kinds: tuple[str, ...]) -> np.ndarray:
    """``(n_rows, n_per_row)`` float32 weights whose groups cycle through random ``kinds``."""
    rng = np.random.default_rng(seed)
    groups = [
        group(rng, kinds[rng.integers(0, len(kinds))]) for _ in range(n_rows * n_per_row // 32)
    ]
    return np.concatenate(groups).reshape(n_rows, n_per_row)


def importance(seed: int, n: int, zeros: bool) -> np.ndarray:
    """Positive importance weights, optionally with runs of zeros."""
    rng = np.random.default_rng(seed)
    w = (rng.random(n) ** 2 * 10.0 ** rng.integers(-3, 4)).astype(np.float32)
    if zeros:
        start = int(rng.integers(0, n))
        w[start : start + int(rng.integers(1, 64))] = 0
    return w
