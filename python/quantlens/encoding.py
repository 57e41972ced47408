"""Which encoding a model is stored in, read from its headers, never from its file names.

Every tensor's stored type is weighed (GGUF: by the bytes it occupies; safetensors and
PyTorch: by its parameter count) and the core ranks the encodings, heaviest first. A GGUF
file's ``general.file_type`` goes first when its tensors really hold that type. Equal
weights keep the declaration order of :class:`SupportedEncoding`, so the answer never
depends on hashing, file order or the process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from quantlens import _core
from quantlens._weightfile import WeightFile
from quantlens.config_enums import SupportedEncoding
from quantlens.files import GGUFFile, SafetensorsFile, TorchFile, open_weights
from quantlens.ggml_types import GGMLQuantizationType

__all__ = [
    "EncodingShare",
    "ModelEncodings",
    "file_encodings",
    "rank_encodings",
    "rank_totals",
    "weight_file_encodings",
]

Weighting = Literal["bytes", "elements"]


@dataclass(frozen=True)
class EncodingShare:
    """One encoding of a model and how much of the model it holds."""

    encoding: SupportedEncoding
    #: How many tensors are stored in it.
    tensors: int
    #: Their bytes or their parameters, as the ranking weighed them.
    weight: int


@dataclass(frozen=True)
class ModelEncodings:
    """The encodings of one model (a file, a split GGUF model or shards), heaviest first."""

    shares: tuple[EncodingShare, ...]
    #: What the shares weigh: ``"bytes"`` (GGUF) or ``"elements"`` (parameters).
    weighting: Weighting
    #: Parameters in all tensors of the model.
    parameters: int
    #: The encoding a GGUF file's ``general.file_type`` states, if any.
    stated: SupportedEncoding | None = None

    @property
    def encodings(self) -> list[SupportedEncoding]:
        """Every encoding, heaviest first."""
        return [share.encoding for share in self.shares]

    @property
    def primary(self) -> SupportedEncoding | None:
        """The encoding the model is in: the heaviest (or the stated one, when present)."""
        return self.shares[0].encoding if self.shares else None


@cache
def _by_core_name() -> dict[str, SupportedEncoding]:
    """The core's encoding names (``F32``, ``F8_E4M3``, ``Q4_K``) → SupportedEncoding."""
    mapping: dict[str, SupportedEncoding] = {}
    for name in _core.encoding_order():
        plain = SupportedEncoding.from_dtype_name(name)
        mapping[name] = plain or SupportedEncoding.from_ggml_type(GGMLQuantizationType[name])
    return mapping


@cache
def _core_names() -> dict[SupportedEncoding, str]:
    return {encoding: name for name, encoding in _by_core_name().items()}


def rank_encodings(
    tensors: Iterable[tuple[str, int, int]],
    weighting: Weighting,
    file_type: int | None = None,
) -> list[EncodingShare]:
    """Rank the encodings of ``tensors``, each ``(type name, elements, bytes)`` with the
    type named as safetensors (``BF16``, ``F8_E4M3``) or ggml (``Q4_K``) names it.

    Types weights are never stored in (``BOOL``, ``U8``, complex numbers, ``Q8_1``) are
    left out, and integer types count only when nothing else is present.
    """
    ranked = _core.rank_encodings(list(tensors), weighting, file_type)
    names = _by_core_name()
    return [EncodingShare(names[name], count, weight) for name, count, weight in ranked]


def rank_totals(totals: Iterable[tuple[SupportedEncoding, int]]) -> list[SupportedEncoding]:
    """Encodings by their summed weight, heaviest first, ties in declaration order."""
    names = _core_names()
    entries = [(names[encoding], weight, weight) for encoding, weight in totals]
    return [share.encoding for share in rank_encodings(entries, "elements")]


def _file_type(weights: GGUFFile) -> int | None:
    value = weights.metadata.get("general.file_type")
    # Any integer type may be stored; only a u32 (never a bool) names a file type.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        return None
    return value


def weight_file_encodings(weights: WeightFile[Any]) -> ModelEncodings:
    """The encodings of an open weight file (a split GGUF model counts all its shards)."""
    if isinstance(weights, GGUFFile):
        # GGUF names tensor types as ggml does, and block types weigh what they occupy.
        tensors = [(t.type_name, t.n_elements, t.nbytes or 0) for t in weights.tensors]
        file_type = _file_type(weights)
        shares = rank_encodings(tensors, "bytes", file_type)
        parameters = sum(elements for _, elements, _ in tensors)
        return ModelEncodings(tuple(shares), "bytes", parameters, _stated(file_type))
    if not isinstance(weights, SafetensorsFile | TorchFile):
        raise TypeError(f"not a weight file quantlens opened: {weights!r}")
    tensors = [(t.dtype, t.n_elements, t.nbytes) for t in weights.tensors]
    shares = rank_encodings(tensors, "elements")
    parameters = sum(elements for _, elements, _ in tensors)
    return ModelEncodings(tuple(shares), "elements", parameters)


def _stated(file_type: int | None) -> SupportedEncoding | None:
    if file_type is None:
        return None
    name = _core.file_type_encoding(file_type)
    return None if name is None else _by_core_name()[name]


def file_encodings(path: str | os.PathLike[str]) -> ModelEncodings:
    """The encodings of the weight file at ``path``, read from its header.

    A split GGUF model opens whole from any shard; a safetensors shard counts alone.
    """
    with open_weights(path) as weights:
        return weight_file_encodings(weights)
