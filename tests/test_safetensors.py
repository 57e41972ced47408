"""safetensors files read by quantlens against the corpus manifest and against the
``safetensors`` package itself on files it wrote (hypothesis: every dtype, shapes with
0-d and empty tensors, random metadata), bit for bit."""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import quantlens
from quantlens import SafetensorsFile

CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
MANIFEST_PATH = CORPUS_DIR / "MANIFEST.json"
SHARDED = "safetensors/generated/hf-gpt2-tiny-bf16"


def _load_entries() -> dict[str, dict[str, Any]]:
    if not MANIFEST_PATH.is_file():
        print(f"corpus manifest not found at {MANIFEST_PATH}: corpus tests skip")
        return {}
    with MANIFEST_PATH.open(encoding="utf-8") as f:
        files = json.load(f)["files"]
    return {e["path"]: e for e in files if e["format"].startswith("safetensors")}


ENTRIES = _load_entries()
FILES = sorted(p for p, e in ENTRIES.items() if e["format"] == "safetensors")
NO_CORPUS = f"corpus manifest not found at {MANIFEST_PATH}"
needs_corpus = pytest.mark.skipif(not ENTRIES, reason=NO_CORPUS)


def _check_values(array: np.ndarray, expected: dict[str, Any]) -> None:
    values = array.astype(np.float32)
    assert values.size == expected["n"]
    little = values.astype("<f4", copy=False).tobytes()
    assert hashlib.sha256(little).hexdigest() == expected["f32_sha256"]
    total = float(values.astype(np.float64).sum())
    assert math.isclose(total, expected["sum"], rel_tol=1e-6, abs_tol=1e-6)
    assert int(np.isnan(values).sum()) == expected["nan_count"]
    first = values.reshape(-1)[:8].tolist()
    assert first == pytest.approx(expected["first8"], nan_ok=True)
    if "first8_exact_int" in expected:
        assert array.reshape(-1)[:8].tolist() == expected["first8_exact_int"]


def _check_file(f: quantlens.WeightFile, entry: dict[str, Any], file_index: int = 0) -> None:
    facts = entry["safetensors"]
    for t in entry["tensors"]:
        info = f.tensor(t["name"])
        assert (info.dtype, list(info.shape)) == (t["dtype"], t["shape"])
        assert (info.offset, info.nbytes) == (t["offset"], t["nbytes"])
        assert info.offset - facts["data_offset"] == t["data_offsets"][0]
        assert info.offset + info.nbytes - facts["data_offset"] == t["data_offsets"][1]
        assert getattr(info, "file", 0) == file_index
        raw = f.tensor_bytes(t["name"])
        assert hashlib.sha256(raw.tobytes()).hexdigest() == t["raw_sha256"]
        array = f.get_tensor(t["name"])
        assert array.shape == tuple(t["shape"])
        _check_values(array, t["expected"])


@needs_corpus
@pytest.mark.parametrize("rel", FILES)
def test_corpus_file_matches_manifest(rel: str) -> None:
    entry = ENTRIES[rel]
    facts = entry["safetensors"]
    path = CORPUS_DIR / rel
    with path.open("rb") as raw:
        (header_len,) = struct.unpack("<Q", raw.read(8))
    assert header_len == facts["header_len"] and header_len + 8 == facts["data_offset"]
    with quantlens.open_weights(path) as f:
        assert isinstance(f, SafetensorsFile) and f.format == "safetensors"
        assert len(f) == facts["tensor_count"] == entry["tensors_total"]
        assert f.metadata == (facts["metadata"] or {})
        assert sorted({t.dtype for t in f.tensors}) == facts["dtypes"]
        offsets = [t.offset for t in f.tensors]
        assert offsets == sorted(offsets), "tensors come in file order"
        _check_file(f, entry)


@needs_corpus
@pytest.mark.parametrize("target", ["", "model.safetensors.index.json"])
def test_sharded_corpus_model_opens_whole(target: str) -> None:
    folder = CORPUS_DIR / SHARDED
    index = ENTRIES[f"{SHARDED}/model.safetensors.index.json"]["index"]
    with quantlens.open_weights(folder / target if target else folder) as f:
        assert isinstance(f, SafetensorsFile)
        assert [p.name for p in f.paths] == index["shards"]
        assert len(f) == index["weight_count"]
        assert f.metadata["total_size"] == str(index["metadata"]["total_size"])
        assert f.metadata["format"] == "pt"
        assert sum(t.nbytes for t in f.tensors) == index["metadata"]["total_size"]
        for i, shard in enumerate(index["shards"]):
            _check_file(f, ENTRIES[f"{SHARDED}/{shard}"], file_index=i)


# --- files written by the safetensors package ------------------------------------------

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
from safetensors import safe_open  # noqa: E402

DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.uint16,
    torch.int16,
    torch.uint32,
    torch.int32,
    torch.uint64,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
    torch.float8_e4m3fnuz,
    torch.float8_e5m2fnuz,
    torch.float8_e8m0fnu,
]


def _raw(t: Any) -> bytes:
    """A tensor's bytes as stored (row-major, little-endian)."""
    return bytes(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


@st.composite
def _tensors(draw: st.DrawFn) -> Any:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=4))
    n = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    data = draw(st.binary(min_size=n, max_size=n))
    flat = torch.frombuffer(bytearray(data), dtype=torch.uint8) if n else torch.empty(0)
    if dtype == torch.bool:
        flat = flat.to(torch.uint8) & 1
    return flat.to(torch.uint8).view(dtype).reshape(shape)


_NAMES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tensors=st.dictionaries(
        _NAMES.filter(lambda k: k != "__metadata__"), _tensors(), min_size=0, max_size=6
    ),
    metadata=st.none() | st.dictionaries(_NAMES, st.text(max_size=20), max_size=4),
)
def test_generated_files_equal_safetensors(
    tmp_path_factory: pytest.TempPathFactory,
    tensors: dict[str, Any],
    metadata: dict[str, str] | None,
) -> None:
    path = tmp_path_factory.mktemp("st") / "random.safetensors"
    safetensors_torch.save_file(tensors, path, metadata=metadata)
    try:
        safe_open(path, framework="pt").__enter__()
    except Exception as e:
        # safetensors 0.8 writes `{},"__metadata__":{}}` for no tensors and empty metadata,
        # and cannot read it back either: both readers must refuse such a file.
        with pytest.raises(quantlens.MalformedFileError, match="JSON"):
            quantlens.open_weights(path)
        assert "JSON" in str(e)
        return
    with quantlens.open_weights(path) as f, safe_open(path, framework="pt") as ref:
        assert isinstance(f, SafetensorsFile)
        assert sorted(f.keys()) == sorted(ref.keys())
        assert f.metadata == (ref.metadata() or {})
        names = ref.keys()
        for name in names:
            expected = ref.get_tensor(name)
            info = f.tensor(name)
            assert info.shape == tuple(expected.shape)
            assert info.nbytes == expected.numel() * expected.element_size()
            array = f.get_tensor(name)
            assert array.shape == tuple(expected.shape)
            assert array.dtype.name == str(expected.dtype).removeprefix("torch.")
            assert array.tobytes() == _raw(expected)
            assert f.tensor_bytes(name).tobytes() == _raw(expected)
            as_torch = f.get_tensor(name, dtype=expected.dtype)
            assert as_torch.dtype == expected.dtype and as_torch.shape == expected.shape
            assert _raw(as_torch) == _raw(expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float8_e4m3fn])
def test_float_conversion_matches_torch(tmp_path: Path, dtype: Any) -> None:
    values = torch.linspace(-4, 4, 97).to(dtype).reshape(1, 97)
    path = tmp_path / "f.safetensors"
    safetensors_torch.save_file({"w": values}, path)
    with quantlens.open_weights(path) as f:
        as_f32 = f.get_tensor("w", dtype="float32")
        assert as_f32.dtype == np.float32
        np.testing.assert_array_equal(as_f32, values.to(torch.float32).numpy())
        torch.testing.assert_close(
            f.get_tensor("w", dtype=torch.float32), values.to(torch.float32), rtol=0, atol=0
        )
        with pytest.raises(ValueError, match="floating-point"):
            f.get_tensor("w", dtype="int32")


def test_sub_byte_dtypes_are_refused_by_name(tmp_path: Path) -> None:
    header = json.dumps({"q": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]}}).encode()
    path = tmp_path / "f4.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0")
    with pytest.raises(quantlens.UnsupportedTypeError, match="F4") as caught:
        quantlens.open_weights(path)
    assert caught.value.tensor == "q"
