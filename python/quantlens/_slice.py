"""Typed arrays over raw tensor bytes: dtype lookup, strided reads and lazy slices.

Everything here works on a flat ``uint8`` view of the bytes a tensor spans (usually a
zero-copy view of a mapped file) and copies out only the elements asked for, so slicing a
tensor faults in only the pages that hold the slice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["TensorSlice", "float_dtype", "numpy_dtype", "strided_copy", "torch_dtype"]

#: numpy names of the element types that live in ``ml_dtypes`` rather than numpy.
_ML_DTYPES = frozenset(
    {
        "bfloat16",
        "float8_e4m3fn",
        "float8_e5m2",
        "float8_e8m0fnu",
        "float8_e4m3fnuz",
        "float8_e5m2fnuz",
    }
)


def numpy_dtype(name: str) -> np.dtype[Any]:
    """The numpy dtype named ``name``; bfloat16 and the float8 types come from
    ``ml_dtypes``, so their values are typed, never reinterpreted bytes."""
    if name in _ML_DTYPES:
        import ml_dtypes

        found: np.dtype[Any] = np.dtype(getattr(ml_dtypes, name))
        return found
    return np.dtype(name)


_FLOAT_NAMES = {"f16": "float16", "half": "float16", "f32": "float32", "float": "float32"}
_FLOAT_NAMES |= {"f64": "float64", "double": "float64", "bf16": "bfloat16"}


def float_dtype(dtype: Any) -> np.dtype[Any]:
    """The numpy float type ``dtype`` names (``ml_dtypes`` ones included)."""
    if isinstance(dtype, str):
        name = dtype.lower()
        found = numpy_dtype(_FLOAT_NAMES.get(name, name))
    else:
        found = np.dtype(dtype)
    if found.kind != "f" and not found.name.startswith(("bfloat16", "float8")):
        raise ValueError(f"dtype must be a floating-point type, not {dtype!r}")
    return found


def torch_dtype(name: str) -> Any:
    """The torch dtype of numpy element type ``name`` (``float8_e4m3fn`` etc. included)."""
    import torch

    return getattr(torch, name)


def _axis_ranges(key: Any, shape: Sequence[int]) -> list[range | int]:
    """One ``range`` (slice) or ``int`` per axis for a basic-indexing ``key``."""
    items = key if isinstance(key, tuple) else (key,)
    at_ellipsis = [i for i, item in enumerate(items) if item is Ellipsis]
    if len(at_ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if at_ellipsis:
        at = at_ellipsis[0]
        fill = len(shape) - (len(items) - 1)
        items = items[:at] + (slice(None),) * max(fill, 0) + items[at + 1 :]
    if len(items) > len(shape):
        raise IndexError(f"too many indices: the tensor has {len(shape)} dimensions")
    items = items + (slice(None),) * (len(shape) - len(items))
    ranges: list[range | int] = []
    for axis, (item, dim) in enumerate(zip(items, shape, strict=True)):
        if isinstance(item, slice):
            ranges.append(range(*item.indices(dim)))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            index = int(item)
            if not -dim <= index < dim:
                raise IndexError(f"index {index} is out of bounds for axis {axis} of size {dim}")
            ranges.append(index % dim)
        else:
            raise TypeError(f"only integers, slices and '...' index a tensor, not {item!r}")
    return ranges


def _extent(start: int, shape: Sequence[int], strides: Sequence[int]) -> tuple[int, int]:
    """The lowest and highest element offset a strided selection touches (not empty)."""
    pairs = list(zip(shape, strides, strict=True))
    low = start + sum(min(0, (d - 1) * s) for d, s in pairs)
    high = start + sum(max(0, (d - 1) * s) for d, s in pairs)
    return low, high


def strided_copy(
    raw: np.ndarray,
    dtype: np.dtype[Any],
    shape: Sequence[int],
    strides: Sequence[int],
    start: int = 0,
) -> np.ndarray:
    """A C-contiguous copy of the elements at ``start + sum(i * stride)`` (in elements) of
    ``raw``, a flat ``uint8`` array; checks that every element lies inside ``raw``."""
    size = dtype.itemsize
    shape, strides = tuple(shape), tuple(strides)
    if 0 in shape:
        return np.empty(shape, dtype)
    low, high = _extent(start, shape, strides)
    if low < 0 or (high + 1) * size > raw.size:
        raise ValueError(f"strides {strides} reach outside the tensor's {raw.size} bytes")
    # as_strided rebuilds the array from its __array_interface__, which cannot name the
    # ml_dtypes types (bfloat16 and float8 all read back as '<f1'/'<f2'): move the elements
    # as opaque items of the same size and give them their type after the copy.
    opaque = np.dtype(f"V{size}")
    window = raw[low * size : (high + 1) * size].view(opaque)
    view = np.lib.stride_tricks.as_strided(
        window[start - low :],
        shape=shape,
        strides=tuple(s * size for s in strides),
        writeable=False,
    )
    return np.array(view, order="C", copy=True).view(dtype)


class TensorSlice:
    """A tensor to index lazily: ``t[0]``, ``t[2:10, ::2]``, ``t[..., -1]``.

    Basic indexing only (integers, slices, ``...``). Each index reads only the bytes
    between the first and last element it selects and returns an independent array.
    """

    def __init__(
        self,
        name: str,
        dtype: np.dtype[Any],
        shape: Sequence[int],
        strides: Sequence[int],
        raw: Callable[[], np.ndarray],
        fix: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = tuple(int(d) for d in shape)
        self.strides = tuple(int(s) for s in strides)
        self._raw = raw
        self._fix = fix

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def get_shape(self) -> list[int]:
        """The shape as a list (the name safetensors' slices use)."""
        return list(self.shape)

    def _plan(self, key: Any) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """``(first element, result shape, result strides)`` in elements for ``key``."""
        start, shape, strides = 0, [], []
        for r, stride in zip(_axis_ranges(key, self.shape), self.strides, strict=True):
            if isinstance(r, int):
                start += r * stride
                continue
            if len(r):
                start += r.start * stride
            shape.append(len(r))
            strides.append(r.step * stride)
        return start, tuple(shape), tuple(strides)

    def byte_range(self, key: Any) -> tuple[int, int]:
        """``(start, stop)``: the bytes, from the tensor's first, that ``self[key]`` reads."""
        start, shape, strides = self._plan(key)
        if 0 in shape:
            return (0, 0)
        low, high = _extent(start, shape, strides)
        return (low * self.dtype.itemsize, (high + 1) * self.dtype.itemsize)

    def __getitem__(self, key: Any) -> np.ndarray:
        start, shape, strides = self._plan(key)
        out = strided_copy(self._raw(), self.dtype, shape, strides, start)
        return self._fix(out) if self._fix is not None else out

    def __repr__(self) -> str:
        return f"TensorSlice({self.name!r}, dtype={self.dtype}, shape={self.shape})"
