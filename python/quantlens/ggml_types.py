"""ggml tensor types under the names gguf-py users know.

``GGMLQuantizationType`` and ``GGML_QUANT_SIZES`` mirror ``gguf.constants``; the values
come from the Rust core's type table, and a test keeps this enum equal to it.
"""

from __future__ import annotations

from enum import IntEnum

from quantlens import _core

__all__ = ["GGML_QUANT_SIZES", "GGMLQuantizationType", "file_type_label"]


class GGMLQuantizationType(IntEnum):
    """A ggml tensor type id, as stored in GGUF tensor infos."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41


#: ``{type: (weights per block, bytes per block)}`` for every known type.
GGML_QUANT_SIZES: dict[GGMLQuantizationType, tuple[int, int]] = {
    GGMLQuantizationType(type_id): (block_size, type_size)
    for type_id, _name, block_size, type_size in _core.ggml_types()
}


def file_type_label(file_type: int) -> str | None:
    """The llama.cpp label of a ``general.file_type`` value (``15`` -> ``"Q4_K_M"``)."""
    return _core.file_type_label(file_type)
