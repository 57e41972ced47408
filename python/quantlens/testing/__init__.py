"""Hypothesis strategies for property-based tests of quantization code.

Use them to test your own quantizers, dequantizers and weight-file tools against
quantlens (or against gguf-py, or ggml)::

    from hypothesis import given
    from quantlens.testing import quantized_tensors

    @given(quantized_tensors(qtypes=["Q4_K", "Q6_K"]))
    def test_my_dequantizer(t):
        assert np.array_equal(my_dequantize(t.data, t.qtype), quantlens.dequantize(t.data, t.qtype))

Blocks are random bytes with their scale fields set to valid values: moderate, extreme and
subnormal f16 scales, zeros, and (with ``special=True``) infinities and NaNs. Requires the
``hypothesis`` package; :func:`gguf_files` also needs ``gguf`` (gguf-py) to write files.
"""

from quantlens.testing.blocks import (
    QuantizedTensor,
    decodable_types,
    f16_scales,
    quant_blocks,
    quantized_tensors,
)
from quantlens.testing.files import GGUFFileSpec, gguf_files

__all__ = [
    "GGUFFileSpec",
    "QuantizedTensor",
    "decodable_types",
    "f16_scales",
    "gguf_files",
    "quant_blocks",
    "quantized_tensors",
]
