"""GGUF checkpoints into transformers, read and decoded by quantlens.

:func:`load_gguf_checkpoint` is a drop-in for transformers' own function of that name (the one
``from_pretrained(..., gguf_file=...)`` calls for architectures without packed GGUF support,
llama among them): it returns the same config, tokenizer fields and state dict, with the same
names, dtypes and bits. What differs is how: metadata comes from quantlens' reader instead of
gguf-py's ``GGUFReader``, and tensors are decoded by quantlens' kernels straight into the
destination dtype, one fresh tensor each, instead of through float32 numpy arrays.

Make ``from_pretrained`` use it for the duration of a block::

    with quantlens.integrations.transformers.patch_transformers():
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file="model.Q4_K_M.gguf")

or get the state dict alone with :func:`load_gguf_state_dict`.

Transformers' own name mapping and per-architecture tensor processors are used as they are.
A tensor goes the fast way when its processor is the identity or llama's Q/K row
permutation (which commutes with decoding, so it is applied to the packed rows); any other
processor gets float32 arrays exactly as transformers gives them. A tensor that may decode
to NaN (a NaN value, or a block with an infinite or NaN scale), whose bits depend on how
the conversion is computed, is decoded transformers' way, so NaNs match bit for bit too.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quantlens import _core
from quantlens.decode import dequantize
from quantlens.files import GGUFFile
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

if TYPE_CHECKING:
    import torch

    from quantlens._core import TensorInfo

__all__ = ["load_gguf_checkpoint", "load_gguf_state_dict", "patch_transformers"]

# GGUF metadata value type ids (gguf-py's GGUFValueType).
_VALUE_TYPES = {
    "UINT8": 0,
    "INT8": 1,
    "UINT16": 2,
    "INT16": 3,
    "UINT32": 4,
    "INT32": 5,
    "FLOAT32": 6,
    "BOOL": 7,
    "STRING": 8,
    "ARRAY": 9,
    "UINT64": 10,
    "INT64": 11,
    "FLOAT64": 12,
}
_STRING, _ARRAY = 8, 9

#: Scale encodings: the integer type of their bits, and the exponent mask.
_SCALE_EXPONENTS: dict[str, tuple[Any, int]] = {
    "f16": (np.uint16, 0x7C00),
    "f32": (np.uint32, 0x7F800000),
}
_swap_lock = threading.RLock()
# transformers' own loader, kept while ``patch_transformers`` has replaced it.
_patched_out: list[Any] = []


def _transformers_loader() -> Any:
    """transformers' ``load_gguf_checkpoint``, even while this module's stands in for it."""
    from transformers import modeling_gguf_pytorch_utils as utils

    # While patched, the function that was in place before the outermost patch, even if
    # something has wrapped ours since (calling the wrapper would come back here).
    return _patched_out[0] if _patched_out else utils.load_gguf_checkpoint


@contextlib.contextmanager
def patch_transformers() -> Iterator[None]:
    """Make transformers load GGUF checkpoints with :func:`load_gguf_checkpoint` while the
    block runs (``from_pretrained(..., gguf_file=...)``, ``AutoConfig``, ``AutoTokenizer``);
    transformers' own loader is back in place on exit, also after an exception."""
    from transformers import modeling_gguf_pytorch_utils as utils

    original = utils.load_gguf_checkpoint
    if original is load_gguf_checkpoint:  # already patched by an enclosing block
        yield
        return
    _patched_out.append(original)
    utils.load_gguf_checkpoint = load_gguf_checkpoint
    try:
        yield
    finally:
        utils.load_gguf_checkpoint = original
        _patched_out.remove(original)


def load_gguf_checkpoint(
    gguf_checkpoint_path: str | os.PathLike[str],
    return_tensors: bool = False,
    model_to_load: Any = None,
    torch_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """What transformers' ``load_gguf_checkpoint`` returns, for the same arguments.

    ``{"config": ..., "tokenizer": ..., "tokenizer_config": ..., "ignore": ...}``, plus
    ``"tensors"`` (transformers' names -> CPU tensors) with ``return_tensors``. Tensors are
    float32, or ``torch_dtype`` when given; ``model_to_load`` (any module with the target
    state dict, on the meta device is enough) supplies the names.
    """
    path = Path(gguf_checkpoint_path)
    with GGUFFile(path) as gguf_file:
        parsed = _parse_metadata(path, gguf_file)
        if return_tensors:
            architecture = str(gguf_file.metadata["general.architecture"])
            parsed["tensors"] = {}
            _load_tensors(gguf_file, parsed, architecture, model_to_load, torch_dtype)
    return parsed


def load_gguf_state_dict(
    path: str | os.PathLike[str],
    dtype: torch.dtype | None = None,
    model: Any = None,
) -> dict[str, torch.Tensor]:
    """The state dict transformers loads from GGUF file ``path``: its names, float32 or
    ``dtype``. ``model`` names the parameters; by default an ``AutoModelForCausalLM`` of
    the file's config, built on the meta device (it costs no memory)."""
    path = Path(path)
    if model is None:
        model = _meta_model(path)
    tensors: dict[str, torch.Tensor] = load_gguf_checkpoint(
        path, return_tensors=True, model_to_load=model, torch_dtype=dtype
    )["tensors"]
    return tensors


def _meta_model(path: Path) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with patch_transformers():
        config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    auto: Any = AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(config)


# -- metadata -------------------------------------------------------------------------------


class _Field:
    """One metadata pair the way gguf-py's ``ReaderField`` shows it to transformers:
    ``parts[i]`` for ``i`` in ``data`` is a value (a 1-sequence, or a string's bytes)."""

    __slots__ = ("data", "parts", "types")

    def __init__(self, parts: list[Any], types: list[int]) -> None:
        self.parts = parts
        self.types = types
        self.data = range(len(parts))


class _Tensor:
    __slots__ = ("name", "tensor_type")

    def __init__(self, name: str, tensor_type: int) -> None:
        self.name = name
        self.tensor_type = tensor_type


class _MetadataReader:
    """The part of gguf-py's ``GGUFReader`` that transformers reads metadata through
    (``fields`` and the tensors' names), over a file quantlens has open."""

    def __init__(self, gguf_file: GGUFFile) -> None:
        metadata = gguf_file.metadata
        fields: dict[str, _Field] = {
            "GGUF.version": _Field([(gguf_file.version,)], [_VALUE_TYPES["UINT32"]]),
            "GGUF.tensor_count": _Field([(len(gguf_file.tensors),)], [_VALUE_TYPES["UINT64"]]),
            "GGUF.kv_count": _Field([(len(metadata),)], [_VALUE_TYPES["UINT64"]]),
        }
        for key, value in metadata.items():
            fields[key] = _field(metadata.types[key], value)
        self.fields = fields
        self.tensors = [_Tensor(t.name, t.type_id) for t in gguf_file.tensors]


def _field(type_name: str, value: Any) -> _Field:
    type_id = _VALUE_TYPES[type_name]
    if type_id != _ARRAY:
        return _Field([_part(type_id, value)], [type_id])
    element = _VALUE_TYPES[value.element_type]
    items = value.tolist()
    return _Field([_part(element, item) for item in items], [_ARRAY, element])


def _part(type_id: int, value: Any) -> Any:
    if type_id == _STRING:
        return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return (value,)


def _parse_metadata(path: Path, gguf_file: GGUFFile) -> dict[str, Any]:
    """transformers' config, tokenizer and ignored fields, parsed by transformers itself
    from quantlens' view of the metadata."""

    reader = _MetadataReader(gguf_file)
    loader = _transformers_loader()
    # transformers imports ``GGUFReader`` from gguf-py when it runs; it gets this file's
    # already-parsed reader instead, for this one call.
    with _gguf_replaced(GGUFReader=lambda *_args, **_kwargs: reader):
        parsed: dict[str, Any] = loader(str(path), return_tensors=False)
    return parsed


@contextlib.contextmanager
def _gguf_replaced(**replacements: Any) -> Iterator[None]:
    """gguf-py's module attributes replaced for the duration of one transformers call.
    transformers imports them from ``gguf`` inside its functions, at each call."""
    import gguf

    with _swap_lock:
        originals = {name: getattr(gguf, name) for name in replacements}
        for name, value in replacements.items():
            setattr(gguf, name, value)
        try:
            yield
        finally:
            for name, value in originals.items():
                setattr(gguf, name, value)


def _weights_map(utils: Any, model: Any, processor: Any) -> dict[str, str]:
    """transformers' ``get_gguf_hf_weights_map``: GGUF tensor name -> parameter name.

    It builds gguf-py's name table for the architecture once per submodule (hundreds of
    times, seconds for a 7B model); the table depends on the architecture and layer count
    alone and is only read, so one per pair is built here.
    """
    import gguf

    name_map = functools.lru_cache(maxsize=None)(gguf.get_tensor_name_map)
    with _gguf_replaced(get_tensor_name_map=name_map):
        mapping: dict[str, str] = utils.get_gguf_hf_weights_map(model, processor)
    return mapping


# -- tensors --------------------------------------------------------------------------------


class _TensorReader:
    """Reads tensors' bytes into one buffer reused for every tensor.

    Reading (a copy from the page cache) instead of mapping keeps the file out of this
    process's resident memory: the peak is the outputs plus the largest tensor's bytes.
    """

    def __init__(self, gguf_file: GGUFFile) -> None:
        self._files = [open(path, "rb") for path in gguf_file.paths]  # noqa: SIM115
        largest = max((t.nbytes or 0 for t in gguf_file.tensors), default=0)
        self._buffer = np.empty(largest, np.uint8)

    def read(self, info: TensorInfo) -> np.ndarray:
        """The tensor's bytes, valid until the next ``read``."""
        view = self._buffer[: info.nbytes or 0]
        done = 0
        while done < view.size:
            got = os.preadv(
                self._files[info.shard].fileno(), [view[done:].data], info.offset + done
            )
            if got == 0:
                raise EOFError(
                    f"{self._files[info.shard].name}: tensor {info.name!r} ends past the end "
                    f"of the file (offset {info.offset + done}); was it truncated while open?"
                )
            done += got
        return view

    def close(self) -> None:
        for handle in self._files:
            handle.close()


def _load_tensors(
    gguf_file: GGUFFile,
    parsed: dict[str, Any],
    architecture: str,
    model_to_load: Any,
    torch_dtype: torch.dtype | None,
) -> None:
    """Fill ``parsed["tensors"]`` the way transformers' tensor loop does."""
    import torch
    from transformers import modeling_gguf_pytorch_utils

    utils: Any = modeling_gguf_pytorch_utils
    processor = utils.TENSOR_PROCESSORS.get(architecture, utils.TensorProcessor)(
        config=parsed.get("config", {})
    )
    key_mapping = _weights_map(utils, model_to_load, processor)
    target = torch_dtype if torch_dtype is not None else torch.float32
    fast = (
        type(processor) in (utils.TensorProcessor, utils.LlamaTensorProcessor)
        and target in (torch.float32, torch.float16, torch.bfloat16)
        and gguf_file.endianness == "little"
    )
    files = _TensorReader(gguf_file)
    tensors = parsed["tensors"]
    try:
        for info in gguf_file.tensors:
            decoded = None
            if fast and _core.can_dequantize(info.type_id):
                if info.name not in key_mapping:  # these processors neither rename nor store
                    continue
                decoded = _decode_permuted(files, info, processor, target)
            if decoded is None:
                _process_reference(files, info, processor, key_mapping, parsed, torch_dtype)
            else:
                tensors[key_mapping[info.name]] = decoded
    finally:
        files.close()


def _decode_permuted(
    files: _TensorReader, info: TensorInfo, processor: Any, target: torch.dtype
) -> torch.Tensor | None:
    """Tensor ``info`` decoded straight into ``target``, its rows reordered first by the
    processor (llama's Q/K permutation moves whole rows, and a ggml block never spans two
    rows, so reordering the packed rows is the same as reordering decoded ones). ``None``
    where that does not hold or the tensor may decode to NaN: then transformers' way decides."""
    import torch

    raw = files.read(info)
    shape = info.shape
    if len(shape) == 2:
        rows = raw.reshape(shape[0], -1)
        result = processor.process(weights=rows, name=info.name)
        if result.name != info.name or result.weights.shape != rows.shape:
            return None
        raw = np.ascontiguousarray(result.weights)
    elif ".attn_q." in info.name or ".attn_k." in info.name:
        return None  # a permuted vector would reorder elements, not rows
    if _may_decode_to_nan(raw, info.type_id):
        return None
    out = torch.empty(shape, dtype=target)
    dequantize(raw, info.type_id, shape, out=out)
    return out


def _may_decode_to_nan(raw: np.ndarray, type_id: int) -> bool:
    """Whether decoding can give a NaN: plain floats that hold one, or blocks with an
    infinite or NaN scale (finite scales times small integers stay finite). Reads only the
    scales, not the quants."""
    plain = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16}
    if type_id in plain:
        return bool(np.isnan(raw.view(plain[GGMLQuantizationType(type_id)])).any())
    if type_id == GGMLQuantizationType.BF16:  # exponent all ones, mantissa nonzero
        return bool(((raw.view(np.uint16) & 0x7FFF) > 0x7F80).any())
    fields = _core.scale_fields(type_id)
    if not fields:
        return True  # not a float or block type this check knows: transformers' way decides
    _, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
    blocks = raw.reshape(-1, type_size)
    for encoding, at in fields:
        # The exponent bits: all ones is an infinity or a NaN.
        bits, exponent = _SCALE_EXPONENTS.get(encoding, (None, 0))
        if bits is None:
            return True  # an encoding this check does not read: let transformers' way decide
        width = np.dtype(bits).itemsize
        scales = blocks[:, at : at + width].view(bits)
        if np.any((scales & exponent) == exponent):
            return True
    return False


def _reference_array(files: _TensorReader, info: TensorInfo) -> np.ndarray:
    """The tensor's bytes as gguf-py's reader presents them: plain types as their numpy
    type in the tensor's shape, blocks (and bf16) as rows of bytes."""
    import gguf

    raw = files.read(info).copy()  # a processor may keep a view of it
    plain = {
        gguf.GGMLQuantizationType.F32: np.float32,
        gguf.GGMLQuantizationType.F16: np.float16,
        gguf.GGMLQuantizationType.F64: np.float64,
        gguf.GGMLQuantizationType.I8: np.int8,
        gguf.GGMLQuantizationType.I16: np.int16,
        gguf.GGMLQuantizationType.I32: np.int32,
        gguf.GGMLQuantizationType.I64: np.int64,
    }.get(gguf.GGMLQuantizationType(info.type_id))
    if plain is not None:
        return raw.view(plain).reshape(info.shape)
    return raw.reshape(*info.shape[:-1], -1)


def _float32(files: _TensorReader, info: TensorInfo) -> np.ndarray:
    """gguf-py's ``dequantize`` of the tensor: quantlens' kernels where they decode the type
    and the values hold no NaN (otherwise gguf-py itself)."""
    import gguf

    if _core.can_dequantize(info.type_id):
        values: np.ndarray = dequantize(files.read(info), info.type_id, info.shape)
        if not values.size or not np.isnan(values.sum(dtype=np.float64)):
            return values
    array = _reference_array(files, info)
    result: np.ndarray = gguf.dequantize(array, gguf.GGMLQuantizationType(info.type_id))
    return result


def _process_reference(
    files: _TensorReader,
    info: TensorInfo,
    processor: Any,
    key_mapping: dict[str, str],
    parsed: dict[str, Any],
    torch_dtype: torch.dtype | None,
) -> None:
    """One step of transformers' own tensor loop, with float32 weights decoded by
    :func:`_float32`."""
    import torch

    result = processor.process(
        weights=_float32(files, info),
        name=info.name,
        tensor_key_mapping=key_mapping,
        parsed_parameters=parsed,
    )
    if result.name not in key_mapping:
        return
    tensor = torch.from_numpy(np.copy(result.weights))
    if torch_dtype is not None:
        tensor = tensor.to(torch_dtype)
    parsed["tensors"][key_mapping[result.name]] = tensor
