"""quantlens: fast, safe readers for model weight files.

``open_weights(path)`` opens a GGUF model (single or split), a safetensors model (single or
sharded) or a PyTorch checkpoint with a memory map, parsing its header without trusting it;
tensor bytes come back as zero-copy numpy views.
"""

from __future__ import annotations

from quantlens._core import __version__
from quantlens.decode import dequantize, kernel_isa
from quantlens.exceptions import (
    LimitExceededError,
    MalformedFileError,
    QuantlensError,
    SplitFileError,
    TensorNotFoundError,
    TruncatedFileError,
    UnsafePickleError,
    UnsupportedFormatError,
    UnsupportedTypeError,
    UnsupportedVersionError,
)
from quantlens.files import (
    GGUFFile,
    Metadata,
    MetadataArray,
    SafetensorsFile,
    SplitInfo,
    TensorInfo,
    TensorSlice,
    TorchFile,
    WeightFile,
    WeightTensorInfo,
    open_weights,
)
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType, file_type_label
from quantlens.limits import Limits

__all__ = [
    "GGML_QUANT_SIZES",
    "GGMLQuantizationType",
    "GGUFFile",
    "LimitExceededError",
    "Limits",
    "MalformedFileError",
    "Metadata",
    "MetadataArray",
    "QuantlensError",
    "SafetensorsFile",
    "SplitFileError",
    "SplitInfo",
    "TensorInfo",
    "TensorNotFoundError",
    "TensorSlice",
    "TorchFile",
    "TruncatedFileError",
    "UnsafePickleError",
    "UnsupportedFormatError",
    "UnsupportedTypeError",
    "UnsupportedVersionError",
    "WeightFile",
    "WeightTensorInfo",
    "__version__",
    "dequantize",
    "file_type_label",
    "kernel_isa",
    "open_weights",
]
