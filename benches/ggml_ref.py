"""ggml's own quantizer and dequantizer, from the libggml bundled with llama-cpp-python,
through ctypes: the reference quantlens is measured against."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class _TypeTraits(ctypes.Structure):
    # struct ggml_type_traits in ggml.h
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


def _library() -> ctypes.CDLL:
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        if (lib_dir / name).exists():
            return ctypes.CDLL(os.fspath(lib_dir / name))
    raise FileNotFoundError(f"no libggml-base in {lib_dir}")


class Ggml:
    """``to_float`` and ``ggml_quantize_chunk`` for any ggml type id."""

    def __init__(self) -> None:
        self.lib = _library()
        self.lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
        self.lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        self.lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        self.lib.ggml_quantize_chunk.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
        ]
        self.lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        self.lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        self.lib.ggml_quantize_init.argtypes = [ctypes.c_int]

    def to_float_fn(self, type_id: int) -> ctypes._CFuncPtr | None:
        pointer = self.lib.ggml_get_type_traits(type_id).contents.to_float
        return TO_FLOAT(pointer) if pointer else None

    def to_float(self, type_id: int, src: np.ndarray, out: np.ndarray) -> None:
        """Decode ``src`` (whole blocks) into the float32 array ``out``, on this thread."""
        fn = self.to_float_fn(type_id)
        if fn is None:
            raise NotImplementedError(f"ggml has no to_float for type {type_id}")
        fn(src.ctypes.data, out.ctypes.data, out.size)

    def can_quantize(self, type_id: int) -> bool:
        return not self.lib.ggml_quantize_requires_imatrix(type_id)

    def quantize(
        self,
        type_id: int,
        values: np.ndarray,
        type_size: int,
        block: int,
        imatrix: np.ndarray | None = None,
    ) -> np.ndarray:
        """Quantize rows of float32 ``values`` (shape ``(rows, n_per_row)``) with ggml's
        ``ggml_quantize_chunk``, optionally with importance weights (one per column)."""
        rows, per_row = values.shape
        values = np.ascontiguousarray(values, np.float32)
        out = np.zeros(rows * per_row // block * type_size, np.uint8)
        weights = None
        if imatrix is not None:
            imatrix = np.ascontiguousarray(imatrix, np.float32)
            weights = imatrix.ctypes.data
        self.lib.ggml_quantize_init(type_id)
        self.lib.ggml_quantize_chunk(
            type_id, values.ctypes.data, out.ctypes.data, 0, rows, per_row, weights
        )
        return out
