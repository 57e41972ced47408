"""Exceptions raised by quantlens.

Every failure quantlens itself detects is a :class:`QuantlensError`; each failure class
has its own subclass, so callers can catch exactly what they handle. Operating-system
problems (a missing file, no permission) raise the built-in :class:`FileNotFoundError`,
:class:`PermissionError` and :class:`OSError` instead.
"""

from __future__ import annotations

import os

__all__ = [
    "LimitExceededError",
    "MalformedFileError",
    "QuantlensError",
    "SplitFileError",
    "TensorNotFoundError",
    "TruncatedFileError",
    "UnsafePickleError",
    "UnsupportedFormatError",
    "UnsupportedTypeError",
    "UnsupportedVersionError",
]


class QuantlensError(Exception):
    """Base class of every error quantlens raises about a weight file.

    Attributes:
        path: the file concerned, when known.
        offset: the byte offset in that file, when the error is about a place in it.
        tensor: the tensor concerned, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        offset: int | None = None,
        tensor: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        self.offset = offset
        self.tensor = tensor

    def __str__(self) -> str:
        return self.message


class MalformedFileError(QuantlensError, ValueError):
    """The file's bytes contradict its format (bad magic, impossible values, overlaps)."""


class TruncatedFileError(MalformedFileError):
    """The file ends before a header field or a tensor's data does."""


class LimitExceededError(MalformedFileError):
    """A count, length or depth claimed by the file is over quantlens's safety cap.

    Attributes:
        setting: the :class:`quantlens.Limits` field that sets the cap
            (``"max_tensors"``, ...), or ``None`` for a cap no setting changes.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        offset: int | None = None,
        tensor: str | None = None,
        setting: str | None = None,
    ) -> None:
        super().__init__(message, path=path, offset=offset, tensor=tensor)
        self.setting = setting


class UnsupportedVersionError(QuantlensError):
    """The file is in a version of its format that quantlens does not read."""


class UnsupportedFormatError(QuantlensError):
    """The file is not a weight format quantlens reads; the message says what it is."""


class UnsupportedTypeError(QuantlensError, NotImplementedError):
    """A tensor's type cannot be decoded by quantlens (a ``NotImplementedError``, as in
    gguf-py, so code written for gguf-py catches it too)."""


class TensorNotFoundError(QuantlensError, KeyError):
    """No tensor has the name asked for."""


class SplitFileError(QuantlensError):
    """A shard of a split model is missing or does not belong with the others."""


class UnsafePickleError(QuantlensError):
    """A PyTorch checkpoint's pickle names something other than tensors, storages and plain
    containers (``os.system``, ``builtins.eval``, a custom class…). quantlens refuses it
    before anything is imported or called: nothing from the file is ever executed."""
