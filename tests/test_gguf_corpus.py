"""Every GGUF file of the shared corpus read against the values in its MANIFEST.json.

The manifest was computed by the reference implementations (gguf-py, ggml); the corpus
lives beside the repository at ``../shared/corpus`` and these tests skip without it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFReader, GGUFValueType

import quantlens
from quantlens import GGUFFile, MetadataArray

CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
MANIFEST_PATH = CORPUS_DIR / "MANIFEST.json"
SPLIT_SHARDS = (
    "gguf/generated/facenet-onet-f16-00001-of-00002.gguf",
    "gguf/generated/facenet-onet-f16-00002-of-00002.gguf",
)
BIG_ENDIAN_FILE = "gguf/generated/resemblyzer-mixed-q4_k.be.gguf"
LITTLE_ENDIAN_TWIN = "gguf/generated/resemblyzer-mixed-q4_k.gguf"


def _load_entries() -> dict[str, dict[str, Any]]:
    if not MANIFEST_PATH.is_file():
        return {}
    with MANIFEST_PATH.open(encoding="utf-8") as f:
        manifest = json.load(f)
    return {e["path"]: e for e in manifest["files"] if e["format"] == "gguf"}


ENTRIES = _load_entries()
NO_CORPUS = f"corpus manifest not found at {MANIFEST_PATH}"


def _skip_without_corpus() -> None:
    if not ENTRIES:
        print(NO_CORPUS)
        pytest.skip(NO_CORPUS)


def _entry(rel: str) -> dict[str, Any]:
    _skip_without_corpus()
    if rel not in ENTRIES:
        reason = f"{rel} is not in the corpus manifest"
        print(reason)
        pytest.skip(reason)
    path = CORPUS_DIR / rel
    if not path.is_file():
        reason = f"corpus file {path} is missing"
        print(reason)
        pytest.skip(reason)
    return ENTRIES[rel]


# One parameter per file, so that a failure names it; a single skipping one without corpus.
FILE_PARAMS = sorted(ENTRIES) or [pytest.param("<no corpus>", id="no-corpus")]


def _same(actual: Any, expected: Any) -> bool:
    """Equality where floats compare exactly, NaN equals NaN, and bools stay bools."""
    if isinstance(expected, float):
        if not isinstance(actual, float):
            return False
        if math.isnan(expected):
            return math.isnan(actual)
        return actual == expected and math.copysign(1, actual) == math.copysign(1, expected)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(_same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return type(actual) is type(expected) and actual == expected


def _shard_index(f: GGUFFile, rel: str) -> int:
    path = (CORPUS_DIR / rel).resolve()
    resolved = [p.resolve() for p in f.paths]
    assert path in resolved, f"{path} is not among the model's files {resolved}"
    return resolved.index(path)


def _check_metadata_value(key: str, actual: Any, actual_type: str, spec: dict[str, Any]) -> None:
    assert actual_type == spec["type"], key
    if spec["type"] == "ARRAY":
        assert isinstance(actual, MetadataArray), key
        assert actual.element_type == spec["array_of"], key
        assert len(actual) == spec["length"], key
        head = spec["head"]
        got = actual[: len(head)]
        assert _same(got, head), f"{key}: {got!r} != {head!r}"
        assert _same([actual[i] for i in range(len(head))], head), key
    elif "value" in spec:
        assert _same(actual, spec["value"]), f"{key}: {actual!r} != {spec['value']!r}"
    else:
        # Long strings are recorded by prefix, byte length and digest.
        raw = actual.encode("utf-8", "surrogateescape")
        assert actual.startswith(spec["value_prefix"]), key
        assert len(raw) == spec["value_len"], key
        assert hashlib.sha256(raw).hexdigest() == spec["value_sha256"], key


@pytest.mark.parametrize("rel", FILE_PARAMS)
def test_header_matches_manifest(rel: str) -> None:
    entry = _entry(rel)
    g = entry["gguf"]
    with quantlens.open_weights(CORPUS_DIR / rel) as f:
        assert f.version == g["version"]
        assert f.endianness == g["endianness"]
        assert f.alignment == g["alignment"]
        shard = _shard_index(f, rel)
        mine = [t for t in f.tensors if t.shard == shard]
        assert len(mine) == g["tensor_count"] == entry["tensors_total"]
        if shard == 0:
            assert f.data_offset == g["data_offset"]
        for t in mine:
            # Every tensor's absolute offset is its file's data section plus its own offset.
            assert t.offset - t.relative_offset == g["data_offset"], t.name


@pytest.mark.parametrize("rel", FILE_PARAMS)
def test_metadata_matches_manifest(rel: str) -> None:
    entry = _entry(rel)
    keys: dict[str, dict[str, Any]] = entry["gguf"]["metadata_keys"]
    with quantlens.open_weights(CORPUS_DIR / rel) as f:
        metadata = f.metadata
        if _shard_index(f, rel) == 0:
            assert len(metadata) == entry["gguf"]["kv_count"] == len(keys)
            assert list(metadata) == list(keys), "keys in file order"
            assert set(metadata.types) == set(keys)
            assert all(isinstance(o, int) for o in metadata.offsets.values())
            offsets = [metadata.offsets[k] for k in keys]
            assert offsets == sorted(offsets) and offsets[0] == 24
            for key, spec in keys.items():
                _check_metadata_value(key, metadata[key], metadata.types[key], spec)
        else:
            # A later shard's own keys are split.*; the model's metadata is the first
            # shard's, which must agree on everything but split.no.
            assert metadata["split.no"] == 0
            for key, spec in keys.items():
                if key != "split.no":
                    _check_metadata_value(key, metadata[key], metadata.types[key], spec)


def _reader_value(field: Any) -> Any:
    """A gguf-py field's full value, strings as bytes (they need not be valid UTF-8)."""
    main = field.types[0]
    if main == GGUFValueType.ARRAY:
        if field.types[-1] == GGUFValueType.STRING:
            return [bytes(field.parts[i]) for i in field.data]
        return field.contents()
    if main == GGUFValueType.STRING:
        return bytes(field.parts[-1])
    return field.contents()


def _as_bytes(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, MetadataArray):
        return [_as_bytes(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_as_bytes(v) for v in value]
    return value


@pytest.mark.parametrize("rel", FILE_PARAMS)
def test_full_metadata_matches_gguf_reader(rel: str) -> None:
    """The manifest keeps only the head of arrays: every element is checked against gguf-py."""
    _entry(rel)
    reader = GGUFReader(CORPUS_DIR / rel)
    fields = {k: v for k, v in reader.fields.items() if not k.startswith("GGUF.")}
    with quantlens.open_weights(CORPUS_DIR / rel) as f:
        first = _shard_index(f, rel) == 0
        if first:
            assert list(f.metadata) == list(fields)
        for key, field in fields.items():
            if key == "split.no" and not first:
                continue
            ours = f.metadata[key]
            assert f.metadata.types[key] == field.types[0].name, key
            if isinstance(ours, MetadataArray):
                assert ours.element_type == field.types[1].name, key
                assert len(ours) == int(field.parts[4][0]), key
                if len(ours):
                    assert ours[-1] == ours.tolist()[-1], key
            assert _same(_as_bytes(ours), _reader_value(field)), key
    del reader


@pytest.mark.parametrize("rel", FILE_PARAMS)
def test_tensors_match_manifest(rel: str) -> None:
    entry = _entry(rel)
    expected = entry["tensors"]
    with quantlens.open_weights(CORPUS_DIR / rel) as f:
        shard = _shard_index(f, rel)
        mine = [t for t in f.tensors if t.shard == shard]
        if not entry["tensors_sampled"]:
            assert [t.name for t in mine] == [e["name"] for e in expected]
        by_name = {t.name: t for t in mine}
        for e in expected:
            t = by_name[e["name"]]
            assert f.tensor(e["name"]).offset == t.offset
            assert t.type_name == e["ggml_type"], t.name
            assert t.type_id == e["ggml_type_id"], t.name
            assert quantlens.GGMLQuantizationType(t.type_id).name == e["ggml_type"]
            assert list(t.ne) == e["ne"], t.name
            assert list(t.shape) == e["shape"], t.name
            assert t.n_elements == e["n_elements"], t.name
            assert t.offset == e["offset"], t.name
            assert t.relative_offset == e["relative_offset"], t.name
            assert t.nbytes == e["nbytes"], t.name
            raw = f.tensor_bytes(e["name"])
            assert raw.dtype.name == "uint8" and raw.shape == (e["nbytes"],)
            assert hashlib.sha256(raw).hexdigest() == e["raw_sha256"], t.name


@pytest.mark.parametrize("rel", FILE_PARAMS)
def test_tensor_bytes_are_the_file_bytes(rel: str) -> None:
    """Views are exactly the file's bytes at the stated offset (checked without the map)."""
    entry = _entry(rel)
    data = (CORPUS_DIR / rel).read_bytes()
    assert len(data) == entry["size"]
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    with quantlens.open_weights(CORPUS_DIR / rel) as f:
        shard = _shard_index(f, rel)
        for t in f.tensors:
            if t.shard == shard:
                assert f.tensor_bytes(t.name).tobytes() == data[t.offset : t.offset + t.nbytes]


def test_split_pair_opens_from_either_shard() -> None:
    entries = [_entry(rel) for rel in SPLIT_SHARDS]
    expected = [[e["name"] for e in entry["tensors"]] for entry in entries]
    views = []
    for rel in SPLIT_SHARDS:
        with quantlens.open_weights(CORPUS_DIR / rel) as f:
            assert f.split is not None
            assert f.split.count == 2
            assert f.split.tensors_count == sum(len(names) for names in expected) == len(f)
            assert [p.name for p in f.split.paths] == [Path(r).name for r in SPLIT_SHARDS]
            assert f.paths == f.split.paths
            got = [[t.name for t in f.tensors if t.shard == s] for s in range(2)]
            assert got == expected
            assert [t.index for t in f.tensors] == list(range(len(f)))
            assert f.file_type == "F16"
            views.append(
                [(t.name, t.shard, t.offset, t.nbytes, t.type_name, t.ne) for t in f.tensors]
            )
    assert views[0] == views[1]


def test_big_endian_file_matches_its_little_endian_twin() -> None:
    """Same keys and values, same tensor layout; raw bytes are stored byte-swapped where
    the element size is above one byte, so only their per-file digests match."""
    be_entry, le_entry = _entry(BIG_ENDIAN_FILE), _entry(LITTLE_ENDIAN_TWIN)
    with (
        quantlens.open_weights(CORPUS_DIR / BIG_ENDIAN_FILE) as be,
        quantlens.open_weights(CORPUS_DIR / LITTLE_ENDIAN_TWIN) as le,
    ):
        assert (be.endianness, le.endianness) == ("big", "little")
        assert list(be.metadata) == list(le.metadata)
        assert be.metadata.types == le.metadata.types
        for key, value in le.metadata.items():
            other = be.metadata[key]
            if isinstance(value, MetadataArray):
                assert _same(other.tolist(), value.tolist()), key
                if value.element_type not in ("STRING", "ARRAY"):
                    assert other.to_numpy().tolist() == value.to_numpy().tolist(), key
            else:
                assert _same(other, value), key
        assert [(t.name, t.ne, t.type_id, t.offset) for t in be.tensors] == [
            (t.name, t.ne, t.type_id, t.offset) for t in le.tensors
        ]
        digests = {e["name"]: e["raw_sha256"] for e in be_entry["tensors"]}
        for t in be.tensors:
            assert hashlib.sha256(be.tensor_bytes(t.name)).hexdigest() == digests[t.name]
        f32 = [t.name for t in be.tensors if t.type_name == "F32" and t.nbytes >= 4]
        assert f32, "the twin files have F32 tensors"
        for name in f32:
            assert (
                be.tensor_bytes(name).view(">f4").tolist()
                == le.tensor_bytes(name).view("<f4").tolist()
            )
    assert {e["name"] for e in le_entry["tensors"]} == set(digests)
