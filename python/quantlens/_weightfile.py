"""``WeightFile``: what every open weight file offers, whatever its format."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from quantlens._slice import TensorSlice
from quantlens.exceptions import TensorNotFoundError

__all__ = ["TensorDescription", "WeightFile"]

_Self = TypeVar("_Self", bound="WeightFile[Any]")


class NativeModel(Protocol):
    """What every ``_core`` model class offers about its files."""

    @property
    def paths(self) -> list[Path]: ...
    @property
    def file_sizes(self) -> list[int]: ...


_Model = TypeVar("_Model", bound=NativeModel)


class TensorDescription(Protocol):
    """What every format says about a tensor."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def nbytes(self) -> int | None: ...
    @property
    def offset(self) -> int: ...


class WeightFile(abc.ABC, Generic[_Model]):
    """An open weight file (or model of several files) of any format, over the native
    ``_core`` model that reads it.

    Use it as a context manager, or call :meth:`close`. Arrays returned by
    :meth:`tensor_bytes` stay valid after closing: they keep the mapping alive.
    """

    #: ``"gguf"``, ``"safetensors"`` or ``"pytorch"``.
    format: str
    #: The path the file or model was opened from.
    path: Path
    _model: _Model | None = None
    _by_name: dict[str, Any] | None = None

    @property
    def _open(self) -> _Model:
        if self._model is None:
            raise ValueError(f"{self.path}: file is closed")
        return self._model

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._model is None

    def close(self) -> None:
        """Release the mapping (arrays already handed out keep their own reference)."""
        self._model = None
        self._by_name = None

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file of the model, in shard order."""
        return tuple(Path(p) for p in self._open.paths)

    @property
    def file_size(self) -> int:
        """Bytes in all files of the model."""
        return sum(self._open.file_sizes)

    @property
    @abc.abstractmethod
    def tensors(self) -> Sequence[TensorDescription]:
        """Every tensor, in file order."""

    @property
    @abc.abstractmethod
    def metadata(self) -> Mapping[str, Any]:
        """The file's metadata (GGUF key-value pairs, safetensors ``__metadata__``)."""

    @abc.abstractmethod
    def tensor_bytes(self, name: str) -> np.ndarray:
        """The bytes tensor ``name`` spans, as a read-only zero-copy ``uint8`` array."""

    @abc.abstractmethod
    def get_tensor(self, name: str, dtype: Any = None) -> Any:
        """Tensor ``name`` as a new array (a torch tensor for a torch ``dtype``)."""

    @abc.abstractmethod
    def get_slice(self, name: str) -> TensorSlice:
        """Tensor ``name`` to index lazily: ``get_slice(name)[0, 2:8]`` reads only the bytes
        the selection needs."""

    def tensor(self, name: str) -> Any:
        """The description of tensor ``name``."""
        if self._by_name is None:
            self._by_name = {t.name: t for t in self.tensors}
        info = self._by_name.get(name)
        if info is None:
            raise TensorNotFoundError(
                f"{self.path}: no tensor named {name!r}", path=self.path, tensor=name
            )
        return info

    def keys(self) -> list[str]:
        """Tensor names, in file order."""
        return [t.name for t in self.tensors]

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.tensors)

    def __iter__(self) -> Iterator[str]:
        return (t.name for t in self.tensors)

    def __contains__(self, name: object) -> bool:
        if self._by_name is None:
            self._by_name = {t.name: t for t in self.tensors}
        return name in self._by_name

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} tensors"
        return f"{type(self).__name__}({str(self.path)!r}, {state})"
