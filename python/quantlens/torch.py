"""Weights as torch tensors: zero-copy over the file, decoded, or staged onto a CUDA device.

::

    import quantlens.torch as qt

    state = qt.load("model.Q4_K_M.gguf", device="cuda:0", dtype=torch.bfloat16)

    with quantlens.open_weights("model.safetensors") as f:
        w = qt.tensor(f, "lm_head.weight")                  # zero-copy, its own dtype
        for name, t in qt.tensors(f, dtype=torch.float16):  # converted, in file order
            ...

What a tensor becomes:

* ``dtype=None``: unquantized tensors (f32, f16, bf16, f8, f64, integers, bool) keep their
  own dtype and are zero-copy views of a private copy-on-write map of the file: writing to
  one never changes the file (later reads through the same open file see the write).
  Block-quantized GGUF tensors decode to ``float32``, as gguf-py's ``dequantize`` does.
* a float ``dtype`` (``torch.float32``, ``torch.float16``, ``torch.bfloat16``): GGUF tensors
  are decoded by the Rust kernels straight into the new tensor, bit-exact with ggml (no
  float32 detour); other tensors are converted by torch. In :func:`tensors` and :func:`load`
  integer and bool tensors keep their dtype.
* a CUDA ``device``: bytes go through a small ring of reusable pinned host buffers and are
  copied asynchronously on a side stream, so reading or decoding the next tensor (on the CPU,
  GIL released) overlaps the transfer of the last. Quantized GGUF tensors can instead be
  uploaded packed (4-7x fewer bytes) and decoded on the GPU (``gpu_dequant``; Triton
  kernels for Q4_K and Q6_K, torch operations for the other types), bit-exact with the CPU
  kernels. Other devices receive CPU tensors through ``Tensor.to``.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import os
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from quantlens import _torch_dequant
from quantlens._slice import torch_dtype
from quantlens.decode import dtype_name
from quantlens.files import GGUFFile, open_weights
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

if TYPE_CHECKING:
    import torch

    from quantlens._weightfile import WeightFile

__all__ = ["PinnedStager", "ProgressCallback", "load", "tensor", "tensors", "to"]

#: ``callback(name, done, total)``: called after each tensor with the bytes of the file's
#: tensors handled so far and in all.
ProgressCallback = Callable[[str, int, int], None]
GpuDequant = bool | Literal["auto"]

#: torch element types of the GGUF types that are plain arrays.
_GGUF_PLAIN = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
}
_DECODED = ("float32", "float16", "bfloat16")


# -- what one tensor becomes ------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How tensor ``name`` is produced: read as ``own`` (``None``: ggml blocks of
    ``qtype``) and delivered as ``target``."""

    name: str
    shape: tuple[int, ...]
    own: torch.dtype | None
    target: torch.dtype
    qtype: GGMLQuantizationType | None
    nbytes: int

    @property
    def decodes(self) -> bool:
        """Whether the Rust kernels (or their torch twins) make the values."""
        return self.qtype is not None


def _as_torch_dtype(dtype: Any) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, dtype_name(dtype))  # type: ignore[no-any-return]


def _plan(file: WeightFile[Any], name: str, dtype: Any, keep_integers: bool) -> _Plan:
    import torch

    info = file.tensor(name)
    requested = None if dtype is None else _as_torch_dtype(dtype)
    qtype: GGMLQuantizationType | None = None
    if isinstance(file, GGUFFile):
        plain = _GGUF_PLAIN.get(info.type_name)
        own = None if plain is None else getattr(torch, plain)
        qtype = GGMLQuantizationType(info.type_id)
        nbytes = info.nbytes if info.nbytes is not None else _gguf_nbytes(qtype, info.n_elements)
    else:
        own, nbytes = torch_dtype(_numpy_name(info)), info.nbytes
    target = requested if requested is not None else own
    if target is None or (keep_integers and own is not None and not own.is_floating_point):
        target = own if own is not None else torch.float32
    if own is not None and (
        target == own or _decoded_name(target) is None or file_is_big_endian(file)
    ):
        qtype = None  # read as it is, converted by torch if need be
    return _Plan(name, tuple(info.shape), own, target, qtype, nbytes)


def file_is_big_endian(file: WeightFile[Any]) -> bool:
    return isinstance(file, GGUFFile) and file.endianness == "big"


def _decoded_name(dtype: torch.dtype) -> str | None:
    """The name of ``dtype`` if the kernels write it (float32, float16, bfloat16)."""
    name = str(dtype).removeprefix("torch.")
    return name if name in _DECODED else None


def _gguf_nbytes(qtype: GGMLQuantizationType, n: int) -> int:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    return n // block_size * type_size


def _numpy_name(info: Any) -> str:
    from quantlens.exceptions import UnsupportedTypeError

    name: str | None = info.numpy_dtype
    if name is None:
        raise UnsupportedTypeError(f"tensor {info.name!r} has no torch type", tensor=info.name)
    return name


# -- CPU tensors ------------------------------------------------------------------------------

#: torch's private maps of each open GGUF file, one per shard.
_GGUF_STORAGES: weakref.WeakKeyDictionary[GGUFFile, dict[int, Any]] = weakref.WeakKeyDictionary()


def _gguf_storage(file: GGUFFile, shard: int) -> Any:
    """A private (copy-on-write) map of shard ``shard`` that torch makes itself: torch has
    no read-only tensors, so it must never see the core's read-only map."""
    import torch

    storages = _GGUF_STORAGES.setdefault(file, {})
    storage = storages.get(shard)
    if storage is None:
        path = file.paths[shard]
        size = path.stat().st_size
        storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
        storages[shard] = storage
    return storage


def _own(file: WeightFile[Any], plan: _Plan) -> torch.Tensor:
    """Tensor ``plan.name`` in its own dtype, zero-copy over the file where it can be."""
    import torch

    assert plan.own is not None
    if not isinstance(file, GGUFFile):
        found: torch.Tensor = file.get_tensor(plan.name, dtype=plan.own)
        return found
    if file.endianness == "big":
        # Byte-swapped elements: read into native order (a copy), typed by torch.
        values = np.ascontiguousarray(file.get_slice(plan.name)[...])
        raw = torch.from_numpy(values.reshape(-1).view(np.uint8))
        return raw.view(plan.own).reshape(plan.shape)
    info = file.tensor(plan.name)
    window = _gguf_storage(file, info.shard)[info.offset : info.offset + plan.nbytes]
    strides = [math.prod(plan.shape[i + 1 :]) for i in range(len(plan.shape))]
    return torch.empty(0, dtype=plan.own).set_(window, 0, plan.shape, strides)


def _cpu_tensor(file: WeightFile[Any], plan: _Plan) -> torch.Tensor:
    import torch

    if plan.decodes:
        if not isinstance(file, GGUFFile):
            raise AssertionError("only GGUF tensors decode")
        decoded = _decoded_name(plan.target) is not None
        out = torch.empty(plan.shape, dtype=plan.target if decoded else torch.float32)
        file.get_tensor(plan.name, out=out)
        return out if decoded else out.to(plan.target)
    own = _own(file, plan)
    return own if own.dtype == plan.target else own.to(plan.target)


# -- CUDA staging -----------------------------------------------------------------------------

_ALIGN = 256


class PinnedStager:
    """Copies host bytes to one CUDA device through a ring of reusable pinned buffers.

    Each piece of data is written (copied, or decoded by the Rust kernels) into the next
    free stretch of a pinned buffer, then copied to the device asynchronously on the
    stager's own stream; a buffer is refilled only once its last copy is done, so the CPU
    prepares the next piece while the last one travels. :meth:`empty` gives a device tensor
    to fill, :meth:`upload` and :meth:`upload_decoded` queue its filling, and
    :meth:`hand_over` makes the current stream wait for it (the CPU never waits)::

        with PinnedStager("cuda:0") as stager:
            out = stager.empty(tuple(cpu.shape), cpu.dtype)
            stager.upload(cpu, out)
            out = stager.hand_over(out)

    Use it as a context manager (``close`` waits for the copies and frees the buffers).
    """

    def __init__(
        self,
        device: torch.device | str | int = "cuda",
        buffer_bytes: int = 64 << 20,
        buffers: int = 3,
        copy_threads: int | None = None,
    ) -> None:
        import torch

        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"PinnedStager copies to CUDA devices, not {self.device}")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if buffers < 2 or buffer_bytes < 1 << 20:
            raise ValueError("use at least two buffers of at least 1 MiB")
        self.buffer_bytes = buffer_bytes // _ALIGN * _ALIGN
        self.stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        self._buffers = [
            torch.empty(self.buffer_bytes, dtype=torch.uint8, pin_memory=True)
            for _ in range(buffers)
        ]
        self._events: list[Any] = [None] * buffers
        self._slot, self._used = 0, 0
        self._workers = copy_threads or min(8, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self._workers) if self._workers > 1 else None

    # -- pinned stretches

    def _stretch(self, nbytes: int) -> torch.Tensor:
        """``nbytes`` (at most a buffer) of pinned memory free to overwrite."""
        if self._used + nbytes > self.buffer_bytes:
            event = self.stream.record_event()
            self._events[self._slot] = event
            self._slot = (self._slot + 1) % len(self._buffers)
            waiting = self._events[self._slot]
            if waiting is not None:
                waiting.synchronize()  # its last copy has finished reading it
            self._used = 0
        start = self._used
        self._used += -(-nbytes // _ALIGN) * _ALIGN
        return self._buffers[self._slot][start : start + nbytes]

    def _copy_in(self, dst: np.ndarray, src: np.ndarray) -> None:
        """``dst[:] = src`` on several threads: reading a cold file map is page-fault bound,
        and numpy copies with the GIL released."""
        parts = min(self._workers, dst.size >> 22)  # pieces of at least 4 MiB
        pool = self._pool
        if pool is None or parts <= 1:
            np.copyto(dst, src)
            return
        bounds = np.linspace(0, dst.size, parts + 1, dtype=np.int64)
        jobs = [pool.submit(np.copyto, dst[a:b], src[a:b]) for a, b in itertools.pairwise(bounds)]
        for job in jobs:
            job.result()

    # -- device side

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised device tensor of the current stream for the stager to fill.

        It comes from the current stream's memory pool, so memory the caller freed there
        (an earlier model, say) is reused without new device allocations; the stager's
        stream waits for the work already queued on the current stream before writing it.
        """
        import torch

        current = torch.cuda.current_stream(self.device)
        tensor = torch.empty(shape, dtype=dtype, device=self.device)
        self.stream.wait_stream(current)
        tensor.record_stream(self.stream)
        return tensor

    def scratch(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised device tensor that only the stager's stream uses."""
        import torch

        with torch.cuda.stream(self.stream):
            return torch.empty(shape, dtype=dtype, device=self.device)

    def upload(self, src: np.ndarray | torch.Tensor, dst: torch.Tensor) -> None:
        """Copy the bytes of contiguous host ``src`` into contiguous device ``dst``."""
        import torch

        host = _host_bytes(src)
        device = dst.view(-1).view(torch.uint8)
        if host.size != device.numel():
            raise ValueError(f"{host.size} bytes do not fill a {device.numel()}-byte tensor")
        for start in range(0, host.size, self.buffer_bytes):
            stop = min(start + self.buffer_bytes, host.size)
            pinned = self._stretch(stop - start)
            self._copy_in(pinned.numpy(), host[start:stop])
            with torch.cuda.stream(self.stream):
                device[start:stop].copy_(pinned, non_blocking=True)

    def upload_decoded(
        self, blocks: np.ndarray, qtype: GGMLQuantizationType, dst: torch.Tensor
    ) -> None:
        """Decode ``blocks`` on the CPU piece by piece into pinned memory, copying each
        piece into device tensor ``dst`` (float32, float16 or bfloat16) as it is done."""
        import torch

        from quantlens.decode import dequantize

        block_size, type_size = GGML_QUANT_SIZES[qtype]
        flat = dst.view(-1)
        itemsize = flat.element_size()
        per_piece = max(1, self.buffer_bytes // (block_size * itemsize))
        n_blocks = blocks.size // type_size
        for first in range(0, n_blocks, per_piece):
            last = min(first + per_piece, n_blocks)
            weights = (last - first) * block_size
            pinned = self._stretch(weights * itemsize).view(flat.dtype)
            dequantize(blocks[first * type_size : last * type_size], qtype, out=pinned)
            with torch.cuda.stream(self.stream):
                flat[first * block_size : first * block_size + weights].copy_(
                    pinned, non_blocking=True
                )

    def hand_over(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` made safe to use on the current stream (which waits for the copies
        queued so far, without blocking the CPU)."""
        import torch

        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return tensor

    def synchronize(self) -> None:
        """Wait until every queued copy and decode has finished."""
        self.stream.synchronize()

    def close(self) -> None:
        """Wait for the copies, then release the pinned buffers and threads."""
        if self._buffers:
            self.synchronize()
        self._buffers, self._events = [], []
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> PinnedStager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _host_bytes(src: np.ndarray | torch.Tensor) -> np.ndarray:
    """A flat ``uint8`` numpy view of contiguous host data (a CPU tensor or an array)."""
    import torch

    if isinstance(src, torch.Tensor):
        if src.device.type != "cpu":
            raise ValueError(f"expected a CPU tensor, not one on {src.device}")
        src = src.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return np.ascontiguousarray(src).reshape(-1).view(np.uint8)


def _gpu_decodes(plan: _Plan, gpu_dequant: GpuDequant) -> bool:
    return (
        gpu_dequant is not False
        and plan.decodes
        and plan.qtype in _torch_dequant.SUPPORTED_TYPES
        and _decoded_name(plan.target) is not None
    )


def _device_tensor(
    file: WeightFile[Any], plan: _Plan, stager: PinnedStager, gpu_dequant: GpuDequant
) -> torch.Tensor:
    """Queue tensor ``plan.name`` onto the stager's device; returns it, still being filled."""
    out = stager.empty(plan.shape, plan.target)
    if plan.decodes and isinstance(file, GGUFFile) and plan.qtype is not None:
        blocks = file.tensor_bytes(plan.name)
        if _gpu_decodes(plan, gpu_dequant):
            import torch

            packed = stager.scratch((blocks.size,), torch.uint8)
            stager.upload(blocks, packed)
            with torch.cuda.stream(stager.stream):
                _torch_dequant.dequantize(packed, plan.qtype, out=out)
        elif _decoded_name(plan.target) is not None:
            stager.upload_decoded(blocks, plan.qtype, out)
        else:
            stager.upload(_cpu_tensor(file, plan), out)  # rare: float64 and the like
        return out
    own = _own(file, plan)
    if plan.own == plan.target:
        stager.upload(own, out)
        return out
    import torch

    staged = stager.scratch(plan.shape, own.dtype)
    stager.upload(own, staged)
    with torch.cuda.stream(stager.stream):
        out.copy_(staged)
    return out


# -- public API -------------------------------------------------------------------------------


def _is_cuda(device: Any) -> bool:
    import torch

    return device is not None and torch.device(device).type == "cuda"


def tensor(
    file: WeightFile[Any],
    name: str,
    dtype: Any = None,
    device: torch.device | str | int | None = None,
) -> torch.Tensor:
    """Tensor ``name`` of open ``file`` as a torch tensor (see the module docstring for
    what ``dtype=None`` gives).

    Args:
        file: an open :class:`~quantlens.WeightFile` (``quantlens.open_weights``).
        name: the tensor's name in the file.
        dtype: ``None`` or a torch dtype (or ``"float32"``/``"float16"``/``"bfloat16"``).
        device: where the tensor goes (default CPU); CUDA goes through pinned staging.
    """
    plan = _plan(file, name, dtype, keep_integers=False)
    if device is None or not _is_cuda(device):
        cpu = _cpu_tensor(file, plan)
        return cpu if device is None else cpu.to(device)
    with PinnedStager(device, buffer_bytes=_buffer_for(plan.nbytes), buffers=2) as stager:
        return stager.hand_over(_device_tensor(file, plan, stager, "auto"))


def _buffer_for(nbytes: int) -> int:
    return min(64 << 20, max(1 << 20, nbytes * 4))


def tensors(
    file: WeightFile[Any],
    dtype: Any = None,
    device: torch.device | str | int | None = None,
    *,
    gpu_dequant: GpuDequant = "auto",
) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of open ``file`` as ``(name, tensor)``, in file order, produced as the
    iteration reaches it. Integer and bool tensors keep their dtype whatever ``dtype`` says.
    On a CUDA device each tensor is ready to use on the current stream when yielded."""
    names = [t.name for t in file.tensors]
    if not _is_cuda(device):
        for name in names:
            plan = _plan(file, name, dtype, keep_integers=True)
            cpu = _cpu_tensor(file, plan)
            yield name, cpu if device is None else cpu.to(device)
        return
    assert device is not None
    _check_gpu_dequant(gpu_dequant, device)
    with PinnedStager(device) as stager:
        for name in names:
            plan = _plan(file, name, dtype, keep_integers=True)
            yield name, stager.hand_over(_device_tensor(file, plan, stager, gpu_dequant))


def to(
    state: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    device: torch.device | str | int,
) -> dict[str, torch.Tensor]:
    """Tensors (a state dict, or ``(name, tensor)`` pairs such as :func:`tensors` yields)
    moved to ``device``. CPU tensors bound for a CUDA device go through pinned staging;
    the copies are complete when this returns."""
    items = state.items() if isinstance(state, Mapping) else state
    if not _is_cuda(device):
        return {name: t.to(device) for name, t in items}
    moved: dict[str, torch.Tensor] = {}
    with PinnedStager(device) as stager:
        for name, t in items:
            if t.device.type != "cpu":
                moved[name] = t.to(stager.device)
                continue
            out = stager.empty(tuple(t.shape), t.dtype)
            stager.upload(t, out)
            moved[name] = stager.hand_over(out)
    return moved


def _is_cpu(device: Any) -> bool:
    import torch

    return torch.device(device).type == "cpu"


#: Decoded bytes from which a CPU load carves its tensors out of one huge-page arena.
_ARENA_MIN_BYTES = 32 << 20
_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14


def _huge_page_arena(nbytes: int) -> torch.Tensor:
    """``nbytes`` of fresh ``uint8`` CPU memory starting on a 2 MiB boundary, advised (on
    Linux) to be backed by transparent huge pages.

    Faulting in fresh 4 KiB pages, not decoding, bounds a load into new memory: on a
    16-core machine 3.5 GB of bfloat16 took 1.3 s in one tensor each, 0.75 s carved from
    this arena (and 0.5 s into memory already touched).
    """
    import torch

    raw = torch.empty(nbytes + 2 * _HUGE_PAGE, dtype=torch.uint8)
    start = -raw.data_ptr() % _HUGE_PAGE
    if sys.platform.startswith("linux"):
        length = -(-nbytes // _HUGE_PAGE) * _HUGE_PAGE
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise(
                ctypes.c_void_p(raw.data_ptr() + start),
                ctypes.c_size_t(length),
                ctypes.c_int(_MADV_HUGEPAGE),
            )
    return raw[start : start + nbytes]


def _cpu_items(file: WeightFile[Any], plans: list[_Plan]) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of a CPU load: zero-copy where they can be, decoded ones carved out of
    one huge-page arena when they are big enough together."""
    carved = [p for p in plans if p.decodes and _decoded_name(p.target) is not None]
    offsets: dict[str, int] = {}
    end = 0
    for plan in carved:
        offsets[plan.name] = end
        nbytes = math.prod(plan.shape) * plan.target.itemsize
        end += -(-nbytes // 64) * 64  # cache-line aligned
    arena = _huge_page_arena(end) if end >= _ARENA_MIN_BYTES else None
    for plan in plans:
        at = offsets.get(plan.name)
        if arena is None or at is None:
            yield plan.name, _cpu_tensor(file, plan)
            continue
        nbytes = math.prod(plan.shape) * plan.target.itemsize
        out = arena[at : at + nbytes].view(plan.target).view(plan.shape)
        if not isinstance(file, GGUFFile):
            raise AssertionError("only GGUF tensors decode")
        file.get_tensor(plan.name, out=out)
        yield plan.name, out


def _check_gpu_dequant(gpu_dequant: GpuDequant, device: Any) -> None:
    if gpu_dequant not in (True, False, "auto"):
        raise ValueError(f"gpu_dequant must be True, False or 'auto', not {gpu_dequant!r}")
    if gpu_dequant is True and not _is_cuda(device):
        raise ValueError(f"gpu_dequant=True needs a CUDA device, not {device!r}")


def load(
    path_or_file: str | os.PathLike[str] | WeightFile[Any],
    device: torch.device | str | int = "cpu",
    dtype: Any = None,
    *,
    progress: bool = True,
    callback: ProgressCallback | None = None,
    gpu_dequant: GpuDequant = "auto",
) -> dict[str, torch.Tensor]:
    """Every tensor of a weight file as a state dict ``{name: tensor}`` in file order.

    Args:
        path_or_file: a path ``quantlens.open_weights`` opens (GGUF, split GGUF,
            safetensors, sharded safetensors, PyTorch checkpoint), or an open file.
        device: where the tensors go. CUDA devices get pinned, asynchronous staging.
        dtype: ``None`` (own dtypes; quantized GGUF tensors as float32) or a float dtype
            for every floating-point and quantized tensor.
        progress: show a tqdm progress bar over the tensors' bytes.
        callback: ``callback(name, done, total)`` after each tensor, in bytes.
        gpu_dequant: on CUDA, upload quantized GGUF blocks packed and decode them on the
            GPU (``"auto"``, the default, does so for every type it can; ``False`` decodes
            on the CPU and copies the weights).

    Returns:
        The state dict; with a CUDA device every copy has finished when it returns. On the
        CPU, tensors decoded from GGUF blocks are carved out of one huge-page allocation
        (freed once all of them are): disjoint views, as safetensors' ``save_file`` and
        ``load_state_dict`` expect; ``torch.save`` of a single one writes the whole
        allocation, so ``clone()`` a tensor you keep alone.
    """
    _check_gpu_dequant(gpu_dequant, device)
    if isinstance(path_or_file, (str, os.PathLike)):
        with open_weights(path_or_file) as file:
            return load(file, device, dtype, progress=progress, callback=callback,
                        gpu_dequant=gpu_dequant)  # fmt: skip
    file = path_or_file
    plans = [_plan(file, t.name, dtype, True) for t in file.tensors]
    sizes = {plan.name: plan.nbytes for plan in plans}
    total = sum(sizes.values())
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    items = (
        _cpu_items(file, plans)
        if _is_cpu(device)
        else tensors(file, dtype, device, gpu_dequant=gpu_dequant)
    )
    state: dict[str, torch.Tensor] = {}
    done = 0
    with tqdm(total=total, unit="B", unit_scale=True, disable=not progress, desc="load") as bar:
        for name, t in items:
            state[name] = t
            done += sizes[name]
            bar.update(sizes[name])
            if callback is not None:
                callback(name, done, total)
    return state
