"""quantlens: fast, safe readers for model weight files.

``open_weights(path)`` opens a GGUF model (single or split), a safetensors model (single or
sharded) or a PyTorch checkpoint with a memory map, parsing its header without trusting it;
tensor bytes come back as zero-copy numpy views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quantlens._core import __version__
from quantlens.decode import dequantize, kernel_isa
from quantlens.encode import can_quantize, quantize
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
from quantlens.gguf_writer import GGUFWriter
from quantlens.limits import Limits

if TYPE_CHECKING:
    from quantlens.config import (
        DeviceSpec,
        HuggingFaceRepo,
        KVCacheStrategy,
        PipelineConfig,
        PipelineEngine,
        RepoType,
        RopeType,
        SupportedEncoding,
        WeightsFormat,
    )

# The configuration API loads on first use, so that `import quantlens` stays fast.
_CONFIG_NAMES = frozenset(
    {
        "DeviceSpec",
        "HuggingFaceRepo",
        "KVCacheStrategy",
        "PipelineConfig",
        "PipelineEngine",
        "RepoType",
        "RopeType",
        "SupportedEncoding",
        "WeightsFormat",
    }
)


def __getattr__(name: str) -> Any:
    if name in _CONFIG_NAMES:
        from quantlens import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GGML_QUANT_SIZES",
    "DeviceSpec",
    "GGMLQuantizationType",
    "GGUFFile",
    "GGUFWriter",
    "HuggingFaceRepo",
    "KVCacheStrategy",
    "LimitExceededError",
    "Limits",
    "MalformedFileError",
    "Metadata",
    "MetadataArray",
    "PipelineConfig",
    "PipelineEngine",
    "QuantlensError",
    "RepoType",
    "RopeType",
    "SafetensorsFile",
    "SplitFileError",
    "SplitInfo",
    "SupportedEncoding",
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
    "WeightsFormat",
    "__version__",
    "can_quantize",
    "dequantize",
    "file_type_label",
    "kernel_isa",
    "open_weights",
    "quantize",
]
