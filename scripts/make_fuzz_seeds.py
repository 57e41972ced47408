"""Write the seed corpora of the fuzz targets in rust/quantlens-core/fuzz.

Seeds come from the real files in ``../shared/corpus`` (where present) and from small
files written here by the same builders the tests use (gguf-py, safetensors, torch.save
and the hand-assembled pickles of ``tests/pytorch_builders.py``, hostile ones included).
They are generated rather than committed: the real files are 20 MB.

Usage: python scripts/make_fuzz_seeds.py [OUT_DIR]   (default: rust/quantlens-core/fuzz/corpus)
"""

from __future__ import annotations

import hashlib
import io
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import gguf_builders  # noqa: E402
import pytorch_builders  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"

#: Mirrors ``SHARD_SEPARATOR`` in fuzz/src/lib.rs.
SHARD_SEPARATOR = b"\n--quantlens-shard--\n"

#: Largest real file used whole as a seed; bigger ones are cut to their header.
WHOLE_FILE_CAP = 1 << 20


def corpus_files(pattern: str) -> list[Path]:
    if not CORPUS.is_dir():
        print(f"no corpus at {CORPUS}: seeds from generated files only", file=sys.stderr)
        return []
    return sorted(p for p in CORPUS.rglob(pattern) if p.is_file())


def gguf_seeds(tmp: Path) -> Iterator[bytes]:
    for path in corpus_files("*.gguf"):
        data = path.read_bytes()
        yield data if len(data) <= WHOLE_FILE_CAP else data[: gguf_header_end(data)]
    for endian in (gguf_builders.GGUFEndian.LITTLE, gguf_builders.GGUFEndian.BIG):
        out = tmp / f"small-{endian.name}.gguf"
        yield gguf_builders.write_small_model(out, endian=endian).read_bytes()
    yield typezoo()


def gguf_header_end(data: bytes) -> int:
    """Where a little-endian GGUF file's data section starts (a header-only seed)."""
    from gguf import GGUFReader

    with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
        f.write(data)
        f.flush()
        return int(GGUFReader(f.name).data_offset)


def typezoo() -> bytes:
    """One small tensor of every ggml type quantlens decodes, random blocks."""
    rng = np.random.default_rng(7)
    tensors, data = [], bytearray()
    for name, block, size in known_types():
        offset = len(data)
        data += rng.integers(0, 256, size * 2, dtype=np.uint8).tobytes()
        data += bytes(-len(data) % 32)
        tensors.append(gguf_builders.Tensor(f"t.{name}", [block * 2], i_type(name), offset))
    return gguf_builders.build_gguf([], tensors, bytes(data)).data


def known_types() -> list[tuple[str, int, int]]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    return [(t.name, *GGML_QUANT_SIZES[t]) for t in GGMLQuantizationType if t in GGML_QUANT_SIZES]


def i_type(name: str) -> int:
    from gguf import GGMLQuantizationType

    return int(GGMLQuantizationType[name])


def split_seeds(tmp: Path) -> Iterator[bytes]:
    shards = gguf_builders.write_split_model(tmp, "seed", ["a", "b", "c", "d", "e"], 2)
    yield b"\x00" + SHARD_SEPARATOR.join(p.read_bytes() for p in shards)
    yield b"\x01" + SHARD_SEPARATOR.join(p.read_bytes() for p in shards[:2])
    # The real split model (780 kB) is seeded to gguf_header shard by shard: whole, it
    # would slow every run of this target a hundredfold.


def safetensors_seeds() -> Iterator[bytes]:
    from safetensors.numpy import save

    for path in corpus_files("*.safetensors"):
        yield path.read_bytes()[:WHOLE_FILE_CAP]
    rng = np.random.default_rng(3)
    yield save({"a": rng.standard_normal((3, 4)).astype(np.float32)})
    yield save(
        {"x": np.arange(6, dtype=np.int64).reshape(2, 3), "y": np.zeros(0, np.float16)},
        metadata={"format": "pt"},
    )


def torch_checkpoints() -> Iterator[bytes]:
    import torch

    for obj in (
        {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "step": 3},
        {"layers": [torch.ones(2, dtype=torch.bfloat16), torch.zeros(3, dtype=torch.int8)]},
    ):
        buf = io.BytesIO()
        torch.save(obj, buf)
        yield buf.getvalue()
        buf = io.BytesIO()
        torch.save(obj, buf, _use_new_zipfile_serialization=False)
        yield buf.getvalue()


def pytorch_seeds() -> Iterator[bytes]:
    for pattern in ("*.pt", "*.pth", "*.bin"):
        for path in corpus_files(pattern):
            data = path.read_bytes()
            if len(data) <= WHOLE_FILE_CAP * 3:
                yield data
    yield from torch_checkpoints()
    for case in pytorch_builders.hostile_cases():
        yield case.data


def pickle_seeds() -> Iterator[bytes]:
    for data in pytorch_seeds():
        if data[:2] != b"PK":
            yield data
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                yield from (z.read(n) for n in z.namelist() if n.endswith("data.pkl"))
        except (zipfile.BadZipFile, KeyError, OSError):
            continue  # a hostile archive: the pytorch_zip target has it whole
    for case in pytorch_builders.hostile_cases():
        if case.payload is not None:
            yield case.payload


#: Block geometry (weights, bytes) of the types quantlens knows, in the order of
#: ``KNOWN_TYPES`` in rust/quantlens-core/src/dtype.rs (ggml id order).
CORE_TYPES: list[tuple[int, int, int]] = [
    (0, 1, 4), (1, 1, 2), (2, 32, 18), (3, 32, 20), (6, 32, 22), (7, 32, 24), (8, 32, 34),
    (9, 32, 36), (10, 256, 84), (11, 256, 110), (12, 256, 144), (13, 256, 176),
    (14, 256, 210), (15, 256, 292), (16, 256, 66), (17, 256, 74), (18, 256, 98),
    (19, 256, 50), (20, 32, 18), (21, 256, 110), (22, 256, 82), (23, 256, 136), (24, 1, 1),
    (25, 1, 2), (26, 1, 4), (27, 1, 8), (28, 1, 8), (29, 256, 56), (30, 1, 2),
    (34, 256, 54), (35, 256, 66), (39, 32, 17), (40, 64, 36), (41, 128, 18),
]  # fmt: skip


def dequant_seeds() -> Iterator[bytes]:
    """Type index, mode byte, then random blocks of every type and real ones from files."""
    from gguf import GGUFReader

    rng = np.random.default_rng(11)
    position = {ty: i for i, (ty, _, _) in enumerate(CORE_TYPES)}
    for index, (_, _, size) in enumerate(CORE_TYPES):
        for mode in (0, 5, 10):
            yield bytes([index, mode]) + rng.integers(0, 256, size * 3, dtype=np.uint8).tobytes()
    for path in corpus_files("*typezoo*.gguf"):
        for t in GGUFReader(path).tensors:
            if int(t.tensor_type) in position:
                raw = bytes(t.data.tobytes())[:4096]
                yield bytes([position[int(t.tensor_type)], 1]) + raw


def write(out: Path, target: str, seeds: Iterator[bytes]) -> None:
    folder = out / target
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for data in seeds:
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
        n += 1
    print(f"{target}: {n} seeds", file=sys.stderr)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "rust/quantlens-core/fuzz/corpus"
    with tempfile.TemporaryDirectory() as tmp:
        write(out, "gguf_header", gguf_seeds(Path(tmp)))
        write(out, "gguf_split", split_seeds(Path(tmp)))
    write(out, "safetensors", safetensors_seeds())
    write(out, "pytorch_zip", pytorch_seeds())
    write(out, "pickle", pickle_seeds())
    write(out, "dequant", dequant_seeds())


if __name__ == "__main__":
    main()
