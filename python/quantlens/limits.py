"""``Limits``: caps on what a weight file may claim, settable per open.

Every reader refuses a file whose header claims more than these (a huge tensor count, a
string of a gigabyte, arrays nested a thousand deep) with a
:class:`~quantlens.exceptions.LimitExceededError` naming the field, before anything is
sized by the claim. The defaults open every real model and stop crafted ones cheaply;
lower them to open untrusted files more strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantlens import _core

__all__ = ["Limits"]

_DEFAULTS = dict(_core.default_limits())


@dataclass(frozen=True)
class Limits:
    """Caps on what a weight file's header may claim.

    Attributes:
        max_header_bytes: largest header: GGUF metadata and tensor infos, a safetensors
            JSON header, a checkpoint's pickles, a sharded model's ``*.index.json``.
        max_tensors: most tensors (and checkpoint storages) in one file.
        max_string_len: longest GGUF metadata string.
        max_array_len: most elements in one GGUF metadata array.
        max_depth: deepest nesting of GGUF arrays, or of a checkpoint's containers.
    """

    max_header_bytes: int = _DEFAULTS["max_header_bytes"]
    max_tensors: int = _DEFAULTS["max_tensors"]
    max_string_len: int = _DEFAULTS["max_string_len"]
    max_array_len: int = _DEFAULTS["max_array_len"]
    max_depth: int = _DEFAULTS["max_depth"]

    def __post_init__(self) -> None:
        for name in _DEFAULTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
                raise ValueError(
                    f"Limits.{name} must be an integer from 0 to 2**64-1, not {value!r}"
                )
