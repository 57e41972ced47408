"""``DeviceSpec``: which device to run on, and its ``torch.device``.

A spec is ``(id, device_type)`` as in MAX's ``max.driver.DeviceSpec``: ``"cpu"`` (id ``-1``
by default) or ``"gpu"`` (an accelerator id, counted from 0). Specs are checked against the
machine only when they become torch devices, and a missing GPU is a ``ValueError`` that
says what was asked and what exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

__all__ = [
    "DeviceSpec",
    "accelerator_count",
    "parse_device_specs",
    "to_torch_device",
    "to_torch_devices",
]

DeviceType = Literal["cpu", "gpu"]

# Names accepted for an accelerator: MAX used "cuda" before settling on "gpu".
_GPU_NAMES = frozenset({"gpu", "cuda", "accelerator"})


@dataclass(frozen=True)
class DeviceSpec:
    """A device to run on: ``DeviceSpec(id, device_type)``.

    ``device_type`` is ``"cpu"`` or ``"gpu"`` (``"cuda"`` is taken as ``"gpu"``). A CPU's id
    is ``-1`` (the default) or ``0``: there is one host device. A GPU's id is its index among
    the machine's accelerators.
    """

    id: int
    device_type: DeviceType = "cpu"

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int):
            raise ValueError(f"DeviceSpec id must be an int, not {self.id!r}")
        kind = str(self.device_type).lower()
        if kind in _GPU_NAMES:
            kind = "gpu"
        if kind not in ("cpu", "gpu"):
            raise ValueError(f"DeviceSpec device_type must be 'cpu' or 'gpu', not {kind!r}")
        object.__setattr__(self, "device_type", kind)
        if kind == "cpu" and self.id not in (-1, 0):
            raise ValueError(f"CPU device id must be -1 or 0 (there is one host), not {self.id}")
        if kind == "gpu" and self.id < 0:
            raise ValueError(f"GPU device id must be 0 or more, not {self.id}")

    @staticmethod
    def cpu(id: int = -1) -> DeviceSpec:
        """The host CPU."""
        return DeviceSpec(id, "cpu")

    @staticmethod
    def accelerator(id: int = 0) -> DeviceSpec:
        """Accelerator (GPU) number ``id``."""
        return DeviceSpec(id, "gpu")

    @staticmethod
    def cuda(id: int = 0) -> DeviceSpec:
        """CUDA GPU number ``id`` (the same as :meth:`accelerator`)."""
        return DeviceSpec(id, "gpu")

    def __str__(self) -> str:
        return "cpu" if self.device_type == "cpu" else f"gpu:{self.id}"


def accelerator_count() -> int:
    """How many GPUs torch can use here (0 without CUDA/ROCm)."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def to_torch_device(spec: DeviceSpec, *, available: int | None = None) -> torch.device:
    """The ``torch.device`` of ``spec``; ``ValueError`` when that GPU is not there.

    ``available`` is the number of GPUs (counted with torch when not given).
    """
    import torch

    if spec.device_type == "cpu":
        return torch.device("cpu")
    count = accelerator_count() if available is None else available
    if spec.id >= count:
        found = "no GPU" if count == 0 else f"only {count} GPU{'s' if count > 1 else ''}"
        if count:
            found += f" (ids 0-{count - 1})" if count > 1 else " (id 0)"
        raise ValueError(
            f"device gpu:{spec.id} was requested but this machine has {found} visible to "
            "torch; use DeviceSpec.cpu() or another id"
        )
    return torch.device("cuda", spec.id)


def to_torch_devices(specs: Iterable[DeviceSpec]) -> list[torch.device]:
    """The ``torch.device`` of every spec, counting GPUs once."""
    specs = list(specs)
    for spec in specs:
        if not isinstance(spec, DeviceSpec):
            raise ValueError(f"device spec must be a DeviceSpec, not {spec!r}")
    count = accelerator_count() if any(s.device_type == "gpu" for s in specs) else 0
    return [to_torch_device(spec, available=count) for spec in specs]


def parse_device_specs(text: str | Sequence[str]) -> list[DeviceSpec]:
    """Specs from command-line text: ``cpu``, ``gpu`` (GPU 0), ``gpu:1``, ``gpu:0,1``,
    ``cuda:2``; several may be given, separated by ``;`` or as a sequence."""
    items = [text] if isinstance(text, str) else list(text)
    specs: list[DeviceSpec] = []
    for item in items:
        for part in item.replace(";", " ").split():
            kind, _, ids = part.partition(":")
            kind = kind.strip().lower()
            if kind == "cpu":
                if ids:
                    specs.append(DeviceSpec.cpu(_parse_id(part, ids)))
                else:
                    specs.append(DeviceSpec.cpu())
            elif kind in _GPU_NAMES:
                numbers = ids.split(",") if ids else ["0"]
                specs.extend(DeviceSpec.accelerator(_parse_id(part, n)) for n in numbers)
            else:
                raise ValueError(f"unknown device {part!r}: expected cpu, gpu, gpu:N or gpu:N,M")
    if not specs:
        raise ValueError("no device given: expected cpu, gpu, gpu:N or gpu:N,M")
    return specs


def _parse_id(part: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"bad device id in {part!r}: {text!r} is not a number") from None
