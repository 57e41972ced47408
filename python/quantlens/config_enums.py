"""The enums of the configuration API: engines, repo kinds, rope kinds, formats, encodings.

They keep the names, values and declaration order of ``max.pipelines.config``; the
encodings go further, with a member for every ggml tensor type the core decodes. Nothing
here imports torch at module level: ``SupportedEncoding.dtype`` imports it when asked.
"""

from __future__ import annotations

import os
import re
from enum import Enum
from typing import TYPE_CHECKING, Any

from quantlens.ggml_types import GGMLQuantizationType

if TYPE_CHECKING:
    import torch

__all__ = [
    "KVCacheStrategy",
    "PipelineEngine",
    "RepoType",
    "RopeType",
    "SupportedEncoding",
    "WeightsFormat",
]


class PipelineEngine(str, Enum):
    """Which engine serves a pipeline: MAX itself, or transformers as the fallback."""

    MAX = "max"
    HUGGINGFACE = "huggingface"


class RepoType(str, Enum):
    """Where a repository lives: on the Hugging Face Hub or in a local folder."""

    online = "online"
    local = "local"


class RopeType(str, Enum):
    """Rotary embedding layout; only matters for GGUF weights (llama.cpp's rope kinds)."""

    none = "none"
    normal = "normal"
    neox = "neox"


class WeightsFormat(str, Enum):
    """The container format of a model's weight files."""

    gguf = "gguf"
    safetensors = "safetensors"
    pytorch = "pytorch"


class KVCacheStrategy(str, Enum):
    """How the key/value cache is laid out; prints as its value, as in MAX."""

    NAIVE = "naive"
    CONTINUOUS = "continuous"
    PAGED = "paged"

    def __str__(self) -> str:
        return self.value


class SupportedEncoding(str, Enum):
    """All possible encodings which may be supported by a particular model.

    The first five members are MAX's, in MAX's order; then 16-bit and 8-bit floats, then one
    member per ggml tensor type the core decodes (named after the type, in lower case).
    ``str()`` gives the bare member name, as MAX 24.6 did.
    """

    float32 = "float32"
    bfloat16 = "bfloat16"
    q4_k = "q4_k"
    q4_0 = "q4_0"
    q6_k = "q6_k"
    float16 = "float16"
    float8_e4m3fn = "float8_e4m3fn"
    float64 = "float64"
    q4_1 = "q4_1"
    q5_0 = "q5_0"
    q5_1 = "q5_1"
    q8_0 = "q8_0"
    q2_k = "q2_k"
    q3_k = "q3_k"
    q5_k = "q5_k"
    q8_k = "q8_k"
    iq2_xxs = "iq2_xxs"
    iq2_xs = "iq2_xs"
    iq3_xxs = "iq3_xxs"
    iq1_s = "iq1_s"
    iq4_nl = "iq4_nl"
    iq3_s = "iq3_s"
    iq2_s = "iq2_s"
    iq4_xs = "iq4_xs"
    iq1_m = "iq1_m"
    tq1_0 = "tq1_0"
    tq2_0 = "tq2_0"
    mxfp4 = "mxfp4"
    nvfp4 = "nvfp4"
    q1_0 = "q1_0"
    int8 = "int8"
    int16 = "int16"
    int32 = "int32"
    int64 = "int64"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name

    @property
    def quantization_encoding(self) -> GGMLQuantizationType | None:
        """The ggml block type of a block-quantized encoding; ``None`` for plain numbers."""
        return _BLOCK_TYPES.get(self)

    @property
    def ggml_type(self) -> GGMLQuantizationType | None:
        """The ggml tensor type storing this encoding in GGUF, if GGUF has one."""
        return _GGML_TYPES.get(self)

    @property
    def is_quantized(self) -> bool:
        """Whether weights in this encoding are packed blocks rather than plain numbers."""
        return self in _BLOCK_TYPES

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of the stored weights: ``torch.uint8`` for packed blocks."""
        import torch

        if self.is_quantized:
            return torch.uint8
        result: torch.dtype = getattr(torch, _PLAIN_TORCH_NAMES[self])
        return result

    @classmethod
    def parse_from_file_name(cls, name: str | os.PathLike[str]) -> SupportedEncoding | None:
        """A hint from a file's base name (case-insensitive), or ``None``.

        Knows llama.cpp's labels (``Q4_K_M``, ``Q5_K_S``, ``IQ4_XS``, ``Q8_0``, ``F16``,
        ``BF16``, ``F32``, ...) and the spelled-out float names. A label counts only as a
        whole word: ``iq4_nl`` is not read as ``q4``. The file's header is the last word;
        see :meth:`quantlens.config.HuggingFaceRepo.encoding_for_file`.
        """
        base = os.path.basename(os.fspath(name)).lower()
        for pattern, encoding in _NAME_PATTERNS:
            if pattern.search(base):
                return encoding
        return None

    @classmethod
    def from_ggml_type(cls, ggml_type: int) -> SupportedEncoding:
        """The encoding of a GGUF tensor of ``ggml_type``; ``ValueError`` for Q8_1."""
        try:
            return _BY_GGML_TYPE[GGMLQuantizationType(ggml_type)]
        except (KeyError, ValueError):
            raise ValueError(f"ggml type {ggml_type} has no SupportedEncoding") from None

    @classmethod
    def from_dtype_name(cls, dtype: str) -> SupportedEncoding | None:
        """The encoding of a plain tensor dtype as safetensors or torch name it.

        ``F32``/``float32``, ``BF16``, ``F16``, ``F8_E4M3``/``float8_e4m3fn``, ``F64`` and the
        signed integers; ``None`` for dtypes with no encoding (``U8``, ``BOOL``, ...).
        """
        return _BY_DTYPE_NAME.get(dtype.lower())


_PLAIN_TORCH_NAMES: dict[SupportedEncoding, str] = {
    SupportedEncoding.float32: "float32",
    SupportedEncoding.bfloat16: "bfloat16",
    SupportedEncoding.float16: "float16",
    SupportedEncoding.float8_e4m3fn: "float8_e4m3fn",
    SupportedEncoding.float64: "float64",
    SupportedEncoding.int8: "int8",
    SupportedEncoding.int16: "int16",
    SupportedEncoding.int32: "int32",
    SupportedEncoding.int64: "int64",
}

_PLAIN_GGML: dict[SupportedEncoding, GGMLQuantizationType] = {
    SupportedEncoding.float32: GGMLQuantizationType.F32,
    SupportedEncoding.bfloat16: GGMLQuantizationType.BF16,
    SupportedEncoding.float16: GGMLQuantizationType.F16,
    SupportedEncoding.float64: GGMLQuantizationType.F64,
    SupportedEncoding.int8: GGMLQuantizationType.I8,
    SupportedEncoding.int16: GGMLQuantizationType.I16,
    SupportedEncoding.int32: GGMLQuantizationType.I32,
    SupportedEncoding.int64: GGMLQuantizationType.I64,
}

_BLOCK_TYPES: dict[SupportedEncoding, GGMLQuantizationType] = {
    encoding: GGMLQuantizationType[encoding.name.upper()]
    for encoding in SupportedEncoding
    if encoding not in _PLAIN_TORCH_NAMES
}

_GGML_TYPES: dict[SupportedEncoding, GGMLQuantizationType] = {**_PLAIN_GGML, **_BLOCK_TYPES}

_BY_GGML_TYPE: dict[GGMLQuantizationType, SupportedEncoding] = {
    ggml: encoding for encoding, ggml in _GGML_TYPES.items()
}

_BY_DTYPE_NAME: dict[str, SupportedEncoding] = {
    **{name: encoding for encoding, name in _PLAIN_TORCH_NAMES.items()},
    "f32": SupportedEncoding.float32,
    "bf16": SupportedEncoding.bfloat16,
    "f16": SupportedEncoding.float16,
    "f8_e4m3": SupportedEncoding.float8_e4m3fn,
    "f8_e4m3fn": SupportedEncoding.float8_e4m3fn,
    "f64": SupportedEncoding.float64,
    "i8": SupportedEncoding.int8,
    "i16": SupportedEncoding.int16,
    "i32": SupportedEncoding.int32,
    "i64": SupportedEncoding.int64,
}


def _word(label: str) -> re.Pattern[str]:
    # A label is a whole word: not preceded or followed by a letter or digit.
    return re.compile(rf"(?<![a-z0-9]){label}(?![a-z0-9])")


def _name_patterns() -> list[tuple[re.Pattern[str], SupportedEncoding]]:
    labels: list[tuple[str, SupportedEncoding]] = [
        # MAX's order first, so its file names keep their meaning.
        (r"(?:f32|fp32|float32)", SupportedEncoding.float32),
        (r"(?:bf16|bfloat16)", SupportedEncoding.bfloat16),
        (r"q4_k(?:_[sml])?", SupportedEncoding.q4_k),
        (r"q4_0", SupportedEncoding.q4_0),
        (r"q6_k(?:_[sml])?", SupportedEncoding.q6_k),
        (r"(?:f16|fp16|float16|half)", SupportedEncoding.float16),
        (r"(?:f8|fp8|float8|f8_e4m3|float8_e4m3fn)", SupportedEncoding.float8_e4m3fn),
        (r"(?:f64|fp64|float64)", SupportedEncoding.float64),
    ]
    for encoding in _BLOCK_TYPES:
        if encoding not in (SupportedEncoding.q4_k, SupportedEncoding.q4_0, SupportedEncoding.q6_k):
            # llama-quantize mixes: Q3_K_M, Q5_K_S, IQ2_XXS, TQ1_0, ...
            suffix = r"(?:_[sml])?" if encoding.name.endswith("_k") else ""
            labels.append((re.escape(encoding.name) + suffix, encoding))
    return [(_word(label), encoding) for label, encoding in labels]


_NAME_PATTERNS = _name_patterns()


def _coerce(enum_type: type[Enum], value: Any) -> Any:
    """``enum_type(value)`` accepting member names and values, case-insensitively."""
    if isinstance(value, enum_type):
        return value
    text = str(value)
    for member in enum_type:
        if text.lower() in (member.name.lower(), str(member.value).lower()):
            return member
    choices = ", ".join(str(member.value) for member in enum_type)
    raise ValueError(f"{value!r} is not a valid {enum_type.__name__}; expected one of: {choices}")
