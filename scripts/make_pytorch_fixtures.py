"""Write the PyTorch checkpoint fixtures under rust/quantlens-core/tests/data/pytorch/.

- Valid checkpoints written by ``torch.save`` (zip, protocols 2, 4 and 5, and the legacy
  pre-1.6 format): every dtype quantlens reads, scalars, empty tensors, views (transpose,
  slices with a storage offset, strided, expanded with stride 0), shared storages, nested
  dicts and lists (Lightning-style ``state_dict`` nesting), a Parameter, a tensor with
  Python attributes, non-tensor metadata.
- Refused checkpoints (``hostile/``): pickles that try to run code, memo tricks, absurd
  sizes, deep nesting, broken archives, and valid files quantlens does not read
  (big-endian, compressed storages, unsupported dtypes, a pickled ``nn.Module``).
- ``expected.json``: for each valid file every tensor's name, quantlens dtype, shape,
  stride, storage key and offset, where the storage record's bytes start (zip), and the
  sha256 of its bytes in row-major order; the metadata entries; for each refused file the
  expected error variant and global.

The hostile payloads are built opcode by opcode (``tests/pytorch_builders.py``); nothing
here unpickles them. Run from anywhere: python3 scripts/make_pytorch_fixtures.py (needs torch).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from pytorch_builders import flatten, hostile_cases  # noqa: E402

OUT = ROOT / "rust/quantlens-core/tests/data/pytorch"

# torch dtype → quantlens DType name (safetensors spelling).
DTYPES = {
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.uint16: "U16",
    torch.int16: "I16",
    torch.uint32: "U32",
    torch.int32: "I32",
    torch.uint64: "U64",
    torch.int64: "I64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.complex64: "C64",
    torch.complex128: "C128",
}


def every_dtype() -> OrderedDict[str, torch.Tensor]:
    values = torch.tensor([0.0, 1.5, -2.0, 3.25, 100.0, -0.5])
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for dtype in DTYPES:
        name = str(dtype).removeprefix("torch.")
        if dtype.is_complex:
            t = torch.complex(values, -values).to(dtype)
        elif dtype == torch.bool:
            t = values > 0
        elif not dtype.is_floating_point:
            t = values.abs().to(torch.int64).to(dtype)
        else:
            t = values.to(dtype)
        out[name] = t.reshape(2, 3)
    return out


def views() -> OrderedDict[str, torch.Tensor]:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tagged = torch.ones(3)
    tagged.note = "attribute"  # saved through _rebuild_from_type_v2
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()
    sd["layer.weight"] = base
    sd["layer.weight_t"] = base.t()
    sd["rows"] = base[1:3]
    sd["cols"] = base[:, 2:5]
    sd["every_other"] = base[:, ::2]
    sd["element"] = base[2, 3]
    sd["expanded"] = torch.tensor([1.0, 2.0, 3.0]).expand(4, 3)
    sd["empty"] = torch.zeros(0, 5)
    sd["empty_view"] = base[4:]
    sd["scalar"] = torch.tensor(7.5, dtype=torch.float64)
    sd["param"] = torch.nn.Parameter(torch.full((2, 2), 0.25))
    sd["tagged"] = tagged
    sd["tied"] = base
    sd["half_t"] = torch.arange(6, dtype=torch.float16).reshape(2, 3).t()
    return sd


def lightning() -> dict:
    return {
        "state_dict": views(),
        "epoch": 3,
        "global_step": 120,
        "hyper_parameters": {
            "lr": 0.5,
            "name": "tiny",
            "dtype": torch.float16,
            "flags": [True, None, False],
            "betas": (0.9, 0.999),
            "big": 2**70,
        },
        "optimizer_states": [
            {"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 0.5}]}
        ],
        "blob": b"hi",
        "device": torch.device("cpu"),
    }


def record_offsets(raw: bytes) -> dict[str, int]:
    """Where each zip record's data starts (local header + name + extra)."""
    out = {}
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        for info in z.infolist():
            name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
            out[info.filename] = info.header_offset + 30 + name_len + extra_len
    return out


def expected_tensors(obj: object, raw: bytes) -> tuple[list, list]:
    tensors, metadata = flatten(obj)
    is_zip = raw.startswith(b"PK")
    offsets = record_offsets(raw) if is_zip else {}
    prefix = next(iter(offsets), "/").split("/")[0]
    out = []
    for name, t in tensors:
        storage = t.untyped_storage()
        key = None
        if is_zip:
            # torch numbers storages in the order it first meets them; find ours by bytes.
            key = storage_key(raw, offsets, prefix, storage)
        # A fresh tensor: .contiguous() keeps odd strides on size-1 dimensions.
        dense = torch.empty(t.shape, dtype=t.dtype).copy_(t.detach())
        contiguous = dense.reshape(-1).view(torch.uint8)
        out.append(
            {
                "name": name,
                "dtype": DTYPES[t.dtype],
                "shape": list(t.shape),
                "stride": list(t.stride()),
                "storage_offset": t.storage_offset(),
                "storage_key": key,
                "storage_file_offset": offsets.get(f"{prefix}/data/{key}") if key else None,
                "raw_sha256": hashlib.sha256(contiguous.numpy().tobytes()).hexdigest(),
            }
        )
    return out, metadata


def storage_key(raw: bytes, offsets: dict[str, int], prefix: str, storage) -> str | None:
    """The record holding `storage`, found by its bytes; None when not unique (empty ones)."""
    want = torch.empty(0, dtype=torch.uint8).set_(storage).numpy().tobytes()
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        keys = [
            info.filename.rsplit("/", 1)[1]
            for info in z.infolist()
            if info.filename.startswith(f"{prefix}/data/") and z.read(info) == want
        ]
    return keys[0] if len(keys) == 1 else None


def zip64(raw: bytes) -> bytes:
    """`raw` re-packed, stored, with zip64 extra fields in every header."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            with dst.open(zipfile.ZipInfo(info.filename), "w", force_zip64=True) as f:
                f.write(src.read(info))
    return out.getvalue()


def save(name: str, obj: object, **kwargs) -> tuple[bytes, object]:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    raw = buf.getvalue()
    (OUT / name).write_bytes(raw)
    # What torch itself reads back is the reference. Its weights-only reader refuses the
    # FRAME opcode of protocols 4 and 5, so those (our own, trusted) files load fully.
    trusted = kwargs.get("pickle_protocol", 2) >= 4
    return raw, torch.load(io.BytesIO(raw), weights_only=not trusted)


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "hostile").mkdir(parents=True)
    legacy = {"_use_new_zipfile_serialization": False}
    small = views()
    del small["tagged"]  # attributes need _rebuild_from_type_v2, which legacy files predate
    valid = {
        "dtypes.pt": (every_dtype(), {}),
        "lightning.ckpt": (lightning(), {}),
        "views_protocol4.pt": (views(), {"pickle_protocol": 4}),
        "views_protocol5.pt": (views(), {"pickle_protocol": 5}),
        "root_tensor.pt": (torch.arange(5, dtype=torch.int32), {}),
        "root_list.pt": ([torch.ones(2), (torch.zeros(1), torch.full((3,), 2.0))], {}),
        "legacy_views.pt": (small, legacy),
        "legacy_dtypes.pt": (
            OrderedDict(
                (k, v) for k, v in every_dtype().items() if "uint" not in k and "float8" not in k
            ),
            legacy,
        ),
    }
    expected: dict = {"valid": {}, "refused": {}}
    for name, (obj, kwargs) in valid.items():
        raw, loaded = save(name, obj, **kwargs)
        tensors, metadata = expected_tensors(loaded, raw)
        expected["valid"][name] = {"tensors": tensors, "metadata": metadata}

    # The same checkpoint with zip64 headers on every record (torch writes them past 4 GiB).
    raw = (OUT / "dtypes.pt").read_bytes()
    (OUT / "zip64.pt").write_bytes(zip64(raw))
    tensors, metadata = expected_tensors(every_dtype(), zip64(raw))
    expected["valid"]["zip64.pt"] = {"tensors": tensors, "metadata": metadata}

    refused = {
        "unsupported_dtype.pt": (
            {"w": torch.zeros(2, dtype=torch.float8_e4m3fnuz)},
            "UnsupportedDType",
            None,
        ),
        "pickled_module.pt": (
            torch.nn.Linear(2, 2),
            "UnsafePickle",
            "torch.nn.modules.linear.Linear",
        ),
    }
    for name, (obj, error, global_name) in refused.items():
        buf = io.BytesIO()
        torch.save(obj, buf)
        (OUT / "hostile" / name).write_bytes(buf.getvalue())
        expected["refused"][f"hostile/{name}"] = {"error": error, "global": global_name}
    for case in hostile_cases():
        path = f"hostile/{case.name}.pt"
        (OUT / path).write_bytes(case.data)
        expected["refused"][path] = {
            "error": case.error,
            "global": case.global_name,
            "live": case.live,
        }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(list(OUT.rglob('*.pt'))) + 1} files, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
