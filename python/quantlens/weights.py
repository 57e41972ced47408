"""``Weights``: a model's tensors as a tree of names, over any quantlens weight file.

``weights.blk[0].attn_q.weight`` or ``weights.model.layers[3].mlp.up_proj.weight`` walks
the dotted tensor names one part at a time (attributes for words, indexing for numbers or
any other part); nothing is read until a leaf is used. A leaf gives its raw bytes
(:meth:`Weights.data`, zero-copy) or a torch tensor (:meth:`Weights.allocate`), decoded
with quantlens' kernels when a float dtype is asked of a quantized tensor.

GGUF (one file or split), safetensors (one file or shards) and PyTorch checkpoints all
load the same way; the files of one model may be given in any order.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from quantlens._slice import numpy_dtype, torch_dtype
from quantlens._weightfile import WeightFile
from quantlens.config_enums import SupportedEncoding, WeightsFormat
from quantlens.devices import DeviceSpec, to_torch_device
from quantlens.exceptions import TensorNotFoundError, UnsupportedTypeError
from quantlens.files import _GGUF_PLAIN, GGUFFile, open_weights
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

if TYPE_CHECKING:
    import torch

__all__ = ["Weights", "WeightsConverter", "load_weights"]

#: What ``allocate(device=...)`` accepts.
DeviceLike = Any
#: What ``allocate(dtype=...)`` accepts: a torch dtype or its name (``"bfloat16"``).
TorchDTypeLike = Any

# Float types the kernels decode blocks into.
_DECODED = ("float32", "float16", "bfloat16")


class WeightsConverter(Protocol):
    """A class that loads weights in another layout (e.g. renaming GGUF names to
    transformers names); ``PipelineConfig.load_weights`` calls it with ``config=``."""

    @staticmethod
    def load_weights(weight_path: list[Path], **kwargs: Any) -> Weights: ...


@dataclass
class _Index:
    """What every node of one tree shares: the open files and where each tensor is."""

    files: list[WeightFile[Any]]
    owner: dict[str, WeightFile[Any]]
    allocated: dict[str, Any] = field(default_factory=dict)


class Weights:
    """A node of a model's tensor-name tree; a leaf is one tensor.

    Build one with :func:`load_weights`. Attribute access and indexing return child nodes
    (``weights.blk[0].attn_q.weight``); ``weights["blk.0.attn_q.weight"]`` also works, and
    is the way to reach a name part that is also a method name (``data``, ``name``...).
    """

    __slots__ = ("_index", "_prefix")

    _index: _Index
    _prefix: str

    def __init__(self, files: Sequence[WeightFile[Any]]) -> None:
        owner: dict[str, WeightFile[Any]] = {}
        for file in files:
            for info in file.tensors:
                other = owner.get(info.name)
                if other is not None and other is not file:
                    raise ValueError(
                        f"tensor {info.name!r} is in both {other.path} and {file.path}; "
                        "give the files of one model only"
                    )
                owner[info.name] = file
        self._index = _Index(list(files), owner)
        self._prefix = ""

    def _child(self, part: str) -> Weights:
        node = object.__new__(Weights)
        node._index = self._index
        node._prefix = f"{self._prefix}.{part}" if self._prefix else part
        return node

    def __getattr__(self, attr: str) -> Weights:
        if attr.startswith("_"):
            # Keeps copy, pickle and IPython's probes (``_repr_html_``) from walking the tree.
            raise AttributeError(attr)
        return self._child(attr)

    def __getitem__(self, key: int | str) -> Weights:
        return self._child(str(key))

    # -- the tree ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The dotted name of this node (``""`` at the root)."""
        return self._prefix

    @property
    def files(self) -> list[WeightFile[Any]]:
        """The open weight files behind this tree."""
        return list(self._index.files)

    @property
    def format(self) -> WeightsFormat:
        """The format of the files (of the first, should several formats be mixed)."""
        return WeightsFormat(self._index.files[0].format)

    def _names(self) -> Iterator[str]:
        if not self._prefix:
            yield from self._index.owner
            return
        start = self._prefix + "."
        for name in self._index.owner:
            if name == self._prefix or name.startswith(start):
                yield name

    def items(self) -> Iterator[tuple[str, Weights]]:
        """``(full name, leaf)`` for every tensor at or below this node, in file order."""
        root = object.__new__(Weights)
        root._index = self._index
        root._prefix = ""
        for name in self._names():
            yield name, root._child(name)

    def keys(self) -> list[str]:
        """The full names of the tensors at or below this node."""
        return list(self._names())

    def exists(self) -> bool:
        """Whether a tensor has exactly this node's name."""
        return self._prefix in self._index.owner

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` (relative to this node) is a tensor."""
        if not isinstance(name, str):
            return False
        full = f"{self._prefix}.{name}" if self._prefix else name
        return full in self._index.owner

    @property
    def allocated_weights(self) -> dict[str, torch.Tensor]:
        """Every tensor :meth:`allocate` has returned in this tree, by name."""
        return dict(self._index.allocated)

    # -- a leaf --------------------------------------------------------------------------

    def _leaf(self) -> tuple[WeightFile[Any], Any]:
        file = self._index.owner.get(self._prefix)
        if file is None:
            raise TensorNotFoundError(self._missing_message(), tensor=self._prefix)
        return file, file.tensor(self._prefix)

    def _missing_message(self) -> str:
        inside = self.keys() if self._prefix else []
        if inside:
            return (
                f"{self._prefix!r} is a group of {len(inside)} tensors "
                f"(e.g. {inside[0]!r}), not one tensor"
            )
        where = ", ".join(str(f.path) for f in self._index.files)
        close = difflib.get_close_matches(self._prefix, list(self._index.owner), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"no tensor named {self._prefix!r} in {where}{hint}"

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape in weights (row-major; for quantized tensors too)."""
        _, info = self._leaf()
        return tuple(info.shape)

    @property
    def encoding(self) -> SupportedEncoding | None:
        """The tensor's encoding (``q4_k``, ``bfloat16``...), ``None`` for types without one."""
        file, info = self._leaf()
        if isinstance(file, GGUFFile):
            try:
                return SupportedEncoding.from_ggml_type(info.type_id)
            except ValueError:
                return None
        return SupportedEncoding.from_dtype_name(info.dtype)

    @property
    def quantization_encoding(self) -> GGMLQuantizationType | None:
        """The ggml block type of a block-quantized GGUF tensor; ``None`` otherwise."""
        file, info = self._leaf()
        if not isinstance(file, GGUFFile) or info.type_name in _GGUF_PLAIN:
            return None
        return GGMLQuantizationType(info.type_id)

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of the stored data: ``torch.uint8`` for quantized blocks."""
        import torch

        if self.quantization_encoding is not None:
            return torch.uint8
        found: torch.dtype = torch_dtype(self._numpy_name())
        return found

    def _numpy_name(self) -> str:
        file, info = self._leaf()
        if isinstance(file, GGUFFile):
            return _GGUF_PLAIN.get(info.type_name, "uint8")
        name = info.numpy_dtype
        if name is None:
            raise UnsupportedTypeError(
                f"{file.path}: tensor {info.name!r} is {info.dtype}, which has no array type",
                path=file.path,
                tensor=info.name,
            )
        return str(name)

    def _byte_shape(self) -> tuple[int, ...]:
        qtype = self.quantization_encoding
        shape = self.shape
        if qtype is None:
            return shape
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        return (*shape[:-1], shape[-1] // block_size * type_size)

    def data(self) -> np.ndarray:
        """The tensor's stored values as a read-only numpy array over the mapped file.

        Plain tensors come in their own element type and shape (big-endian GGUF files as
        big-endian arrays); quantized blocks as ``uint8`` rows ``(..., row_bytes)``.
        Nothing is copied.
        """
        file, info = self._leaf()
        raw = file.tensor_bytes(info.name)
        if self.quantization_encoding is not None:
            return raw.reshape(self._byte_shape())
        element = numpy_dtype(self._numpy_name())
        if isinstance(file, GGUFFile):
            if file.endianness == "big" and element.itemsize > 1:
                try:
                    element = element.newbyteorder(">")
                except (TypeError, ValueError):
                    # ml_dtypes types have no big-endian form: a swapped copy it is.
                    swapped = raw.view(f">u{element.itemsize}").astype(f"<u{element.itemsize}")
                    return swapped.view(element).reshape(info.shape)
            return raw.view(element).reshape(info.shape)
        typed = raw.view(element)
        if info.contiguous:
            return typed.reshape(info.shape)
        strides = tuple(s * element.itemsize for s in info.strides)
        return np.lib.stride_tricks.as_strided(typed, info.shape, strides, writeable=False)

    def allocate(
        self,
        dtype: TorchDTypeLike = None,
        shape: Sequence[int] | None = None,
        device: DeviceLike = None,
    ) -> torch.Tensor:
        """The tensor as a new torch tensor.

        Args:
            dtype: ``None`` keeps the stored type (``uint8`` blocks for quantized tensors).
                A float dtype (``torch.float32``, ``float16``, ``bfloat16``) decodes
                quantized blocks with quantlens' kernels, and converts plain floats.
            shape: if given, must equal :attr:`shape` (or, for raw blocks, their byte
                shape); a mismatch is a ``ValueError``.
            device: a ``torch.device``, a device string (``"cuda:0"``) or a ``DeviceSpec``;
                the CPU by default.
        """
        import torch

        file, info = self._leaf()
        own = self.dtype
        target = own if dtype is None else _as_torch_dtype(dtype)
        qtype = self.quantization_encoding
        quantized = qtype is not None
        raw_blocks = quantized and target == torch.uint8
        self._check_shape(shape, raw_blocks)
        if qtype is not None and not raw_blocks and _name(target) not in _DECODED:
            raise ValueError(
                f"tensor {self._prefix!r} is {qtype.name}: allocate "
                f"decodes it to float32, float16 or bfloat16 or gives its uint8 blocks, "
                f"not {_name(target)}"
            )
        if (
            not quantized
            and target != own
            and not (own.is_floating_point and target.is_floating_point)
        ):
            raise ValueError(
                f"tensor {self._prefix!r} is {_name(own)}: allocate converts only between "
                f"floating-point types, not to {_name(target)}"
            )
        where = None if device is None else _as_torch_device(device)
        tensor: torch.Tensor
        if where is not None and where.type == "cuda" and not raw_blocks:
            # Pinned staging (or decoding on the GPU), never a copy out of the mapping.
            from quantlens import torch as quantlens_torch

            tensor = quantlens_torch.tensor(file, info.name, dtype=target, device=where)
        elif raw_blocks:
            tensor = _copy_to_torch(self.data(), torch.uint8)
        elif isinstance(file, GGUFFile):
            if quantized or (_name(own) in _DECODED and _name(target) in _DECODED):
                tensor = file.get_tensor(info.name, dtype=target)
            else:
                tensor = _copy_to_torch(self.data(), own).to(target)
        else:
            tensor = file.get_tensor(info.name, dtype=target)
        if where is not None and tensor.device != where:
            tensor = tensor.to(where)
        self._index.allocated[self._prefix] = tensor
        return tensor

    def _check_shape(self, shape: Sequence[int] | None, raw_blocks: bool) -> None:
        if shape is None:
            return
        asked = tuple(int(d) for d in shape)
        allowed = {self.shape, self._byte_shape()} if raw_blocks else {self.shape}
        if asked not in allowed:
            raise ValueError(
                f"tensor {self._prefix!r} has shape {self.shape}"
                + (f" (blocks {self._byte_shape()})" if raw_blocks else "")
                + f", not the {asked} asked for"
            )

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the files (tensors and arrays handed out stay valid)."""
        for file in self._index.files:
            file.close()

    def __enter__(self) -> Weights:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.exists():
            encoding = self.encoding
            kind = encoding.name if encoding is not None else self._numpy_name()
            return f"Weights({self._prefix!r}, {kind}, shape={self.shape})"
        count = sum(1 for _ in self._names())
        return f"Weights({self._prefix!r}, {count} tensors)"

    def __dir__(self) -> list[str]:
        # Tab completion offers the next name parts under this node.
        depth = self._prefix.count(".") + 1 if self._prefix else 0
        parts = {name.split(".")[depth] for name in self._names() if name != self._prefix}
        return sorted(set(super().__dir__()) | parts)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _as_torch_dtype(dtype: TorchDTypeLike) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        aliases = {"f32": "float32", "f16": "float16", "half": "float16", "bf16": "bfloat16"}
        name = dtype.lower().removeprefix("torch.")
        found = getattr(torch, aliases.get(name, name), None)
        if isinstance(found, torch.dtype):
            return found
    raise ValueError(f"dtype must be a torch dtype or its name, not {dtype!r}")


def _as_torch_device(device: DeviceLike) -> torch.device:
    import torch

    if isinstance(device, DeviceSpec):
        return to_torch_device(device)
    return torch.device(device)


def _copy_to_torch(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A writable torch copy of ``array`` (of the same element size) as ``dtype``."""
    import torch

    native = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    as_bytes = native.reshape(-1).view(np.uint8).copy()
    return torch.from_numpy(as_bytes).view(dtype).reshape(array.shape)


def load_weights(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Weights:
    """Open a model's weight files as one :class:`Weights` tree.

    ``paths`` are the files of one model: a GGUF file or every shard of a split one (any
    shard opens the whole model), safetensors shards (or their folder or index), or PyTorch
    checkpoints. A file named twice, or a shard already opened through another, is opened
    once.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    wanted = [Path(p) for p in paths]
    if not wanted:
        raise ValueError("load_weights needs at least one weight file")
    files: list[WeightFile[Any]] = []
    covered: set[Path] = set()
    try:
        for path in wanted:
            if not path.exists():
                raise FileNotFoundError(f"weight file not found: {path}")
            if path.resolve() in covered:
                continue
            file = open_weights(path)
            files.append(file)
            covered.update(p.resolve() for p in file.paths)
        return Weights(files)
    except BaseException:
        for file in files:
            file.close()
        raise
