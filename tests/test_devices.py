"""DeviceSpec and its torch devices: MAX's constructors, and clear errors for missing GPUs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from quantlens.devices import (
    DeviceSpec,
    accelerator_count,
    parse_device_specs,
    to_torch_device,
    to_torch_devices,
)

NO_CUDA = "no CUDA GPU visible to torch on this machine"


def test_constructors_match_max() -> None:
    assert DeviceSpec.cpu() == DeviceSpec(-1, "cpu")
    assert DeviceSpec.cpu(0) == DeviceSpec(0, "cpu")
    assert DeviceSpec.accelerator() == DeviceSpec(0, "gpu")
    assert DeviceSpec.accelerator(3) == DeviceSpec(3, "gpu")
    assert DeviceSpec.cuda(1) == DeviceSpec.accelerator(1)
    assert DeviceSpec(2, "cuda").device_type == "gpu"
    assert DeviceSpec(0).device_type == "cpu"
    assert [f.name for f in dataclasses.fields(DeviceSpec)] == ["id", "device_type"]


def test_specs_are_frozen_and_hashable() -> None:
    spec = DeviceSpec.accelerator(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.id = 2  # type: ignore[misc]
    assert len({spec, DeviceSpec.cuda(1), DeviceSpec.cpu()}) == 2
    assert str(spec) == "gpu:1"
    assert str(DeviceSpec.cpu()) == "cpu"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, "tpu"), "device_type must be 'cpu' or 'gpu'"),
        ((-1, "gpu"), "GPU device id must be 0 or more"),
        ((3, "cpu"), "CPU device id must be -1 or 0"),
        (("0", "gpu"), "id must be an int"),
        ((True, "gpu"), "id must be an int"),
    ],
)
def test_bad_specs_are_value_errors(args: tuple[object, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeviceSpec(*args)  # type: ignore[arg-type]


def test_cpu_becomes_the_torch_cpu_whatever_the_gpu_count() -> None:
    assert to_torch_device(DeviceSpec.cpu()) == torch.device("cpu")
    assert to_torch_device(DeviceSpec.cpu(0), available=0) == torch.device("cpu")
    # MAX checked CPU ids against the accelerator count: a CPU spec never needs a GPU.
    assert to_torch_devices([DeviceSpec.cpu(0), DeviceSpec.cpu()]) == [torch.device("cpu")] * 2


def test_missing_gpu_names_what_was_asked_and_what_exists() -> None:
    with pytest.raises(ValueError, match=r"gpu:0 was requested but this machine has no GPU"):
        to_torch_device(DeviceSpec.accelerator(0), available=0)
    with pytest.raises(ValueError, match=r"gpu:1 was requested .* only 1 GPU \(id 0\)"):
        to_torch_device(DeviceSpec.accelerator(1), available=1)
    with pytest.raises(ValueError, match=r"gpu:4 was requested .* only 2 GPUs \(ids 0-1\)"):
        to_torch_device(DeviceSpec.accelerator(4), available=2)
    assert to_torch_device(DeviceSpec.accelerator(1), available=2) == torch.device("cuda", 1)


def test_missing_gpu_on_this_machine_is_a_value_error() -> None:
    count = accelerator_count()
    assert count == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    with pytest.raises(ValueError, match=f"gpu:{count} was requested"):
        to_torch_devices([DeviceSpec.cpu(), DeviceSpec.accelerator(count)])


def test_missing_gpu_is_still_an_error_under_python_O() -> None:
    # MAX used a bare assert, which `python -O` removes.
    code = (
        "from quantlens.devices import DeviceSpec, to_torch_device\n"
        "try:\n"
        "    to_torch_device(DeviceSpec.accelerator(7), available=0)\n"
        "except ValueError as e:\n"
        "    print('ValueError', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("ValueError device gpu:7 was requested")


def test_non_spec_entries_are_rejected() -> None:
    with pytest.raises(ValueError, match="must be a DeviceSpec"):
        to_torch_devices(["cpu"])  # type: ignore[list-item]


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_gpu_spec_becomes_a_cuda_device() -> None:
    assert to_torch_devices([DeviceSpec.accelerator(0)]) == [torch.device("cuda", 0)]
    torch.zeros(1, device=to_torch_device(DeviceSpec.cuda(0)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpu", [DeviceSpec.cpu()]),
        ("CPU:0", [DeviceSpec.cpu(0)]),
        ("gpu", [DeviceSpec.accelerator(0)]),
        ("gpu:1", [DeviceSpec.accelerator(1)]),
        ("gpu:0,2", [DeviceSpec.accelerator(0), DeviceSpec.accelerator(2)]),
        ("cuda:3", [DeviceSpec.accelerator(3)]),
        ("cpu;gpu:1", [DeviceSpec.cpu(), DeviceSpec.accelerator(1)]),
        (["gpu:1", "cpu"], [DeviceSpec.accelerator(1), DeviceSpec.cpu()]),
    ],
)
def test_parse_device_specs(text: str | list[str], expected: list[DeviceSpec]) -> None:
    assert parse_device_specs(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("tpu:0", "unknown device"), ("gpu:x", "is not a number"), ("", "no device given")],
)
def test_parse_device_specs_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_device_specs(text)
