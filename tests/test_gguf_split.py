"""Models split across files (``NAME-00001-of-00003.gguf``): assembled from any shard,
and refused, naming the shard at fault, when the set is incomplete or mixed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader
from gguf_builders import (
    KV,
    UINT16,
    Tensor,
    build_gguf,
    kv_str,
    scalar,
    write,
    write_split_model,
)

import quantlens
from quantlens import SplitFileError

NAMES = [f"blk.{i}.weight" for i in range(5)]


@pytest.fixture
def shards(tmp_path: Path) -> list[Path]:
    """Five tensors, two per shard: three files."""
    paths = write_split_model(tmp_path, "model", NAMES, 2)
    assert [p.exists() for p in paths] == [True] * 3
    return paths


def _layout(f: quantlens.GGUFFile) -> list[tuple[str, int, int, int, str]]:
    return [(t.name, t.shard, t.offset, t.nbytes, t.type_name) for t in f.tensors]


def test_every_shard_opens_the_whole_model(shards: list[Path]) -> None:
    layouts = []
    for path in shards:
        with quantlens.open_weights(path) as f:
            assert f.split is not None
            assert f.split.count == 3
            assert f.split.tensors_count == 5 == len(f)
            assert f.split.paths == tuple(shards) == f.paths
            assert [t.name for t in f.tensors] == NAMES
            assert [t.shard for t in f.tensors] == [0, 0, 1, 1, 2]
            assert [t.index for t in f.tensors] == list(range(5))
            # The model's metadata is the first shard's.
            assert f.metadata["general.name"] == "model"
            assert f.metadata["testarch.block_count"] == 5
            assert f.metadata["split.no"] == 0
            assert f.metadata["split.count"] == 3
            assert f.metadata.types["split.count"] == "UINT16"
            layouts.append(_layout(f))
    assert layouts[0] == layouts[1] == layouts[2]


def test_shard_tensors_match_gguf_reader(shards: list[Path]) -> None:
    with quantlens.open_weights(shards[1]) as f:
        for s, path in enumerate(shards):
            reader = GGUFReader(path)
            mine = [t for t in f.tensors if t.shard == s]
            assert [t.name for t in mine] == [rt.name for rt in reader.tensors]
            for t, rt in zip(mine, reader.tensors, strict=True):
                assert t.offset == rt.data_offset
                assert t.relative_offset == rt.data_offset - reader.data_offset
                assert list(t.ne) == [int(d) for d in rt.shape]
                assert t.nbytes == rt.n_bytes
                view = f.tensor_bytes(t.name)
                assert np.array_equal(view.view(np.float32), rt.data)
            del reader


def test_missing_shard_is_named(shards: list[Path]) -> None:
    shards[1].unlink()
    for opened in (shards[0], shards[2]):
        with pytest.raises(SplitFileError) as info:
            quantlens.open_weights(opened)
        assert info.value.path == str(shards[1])
        assert str(shards[1]) in str(info.value)
        assert "missing" in str(info.value)
    shards[0].unlink()
    with pytest.raises(SplitFileError) as info:
        quantlens.open_weights(shards[2])
    assert info.value.path == str(shards[0])


def test_shard_with_another_count_is_named(tmp_path: Path, shards: list[Path]) -> None:
    (tmp_path / "other").mkdir()
    other = write_split_model(tmp_path / "other", "model", NAMES[:4], 2, seed=1)
    assert len(other) == 2
    shutil.copyfile(other[1], shards[1])  # split.no is right (1), split.count is 2
    for opened in (shards[0], shards[2]):
        with pytest.raises(SplitFileError) as info:
            quantlens.open_weights(opened)
        assert info.value.path == str(shards[1])
        assert "split.count" in str(info.value)
    with pytest.raises(SplitFileError) as info:
        quantlens.open_weights(shards[1])
    # Opened directly, its own split.count disagrees with its name.
    assert info.value.path == str(shards[1])


def test_shard_in_the_wrong_place_is_named(shards: list[Path]) -> None:
    shutil.copyfile(shards[2], shards[1])  # split.no 2 where 1 belongs
    with pytest.raises(SplitFileError) as info:
        quantlens.open_weights(shards[0])
    assert info.value.path == str(shards[1])
    assert "split.no" in str(info.value)


def test_tensor_in_two_shards(tmp_path: Path, shards: list[Path]) -> None:
    (tmp_path / "other").mkdir()
    names = ["x.0", "x.1", NAMES[0], "x.3", "x.4"]  # shard 2 holds blk.0.weight again
    other = write_split_model(tmp_path / "other", "model", names, 2, seed=2)
    shutil.copyfile(other[1], shards[1])
    with pytest.raises(SplitFileError) as info:
        quantlens.open_weights(shards[2])
    assert info.value.path == str(shards[1])
    assert NAMES[0] in str(info.value)
    assert str(shards[0]) in str(info.value)


def test_tensors_count_mismatch(tmp_path: Path, shards: list[Path]) -> None:
    (tmp_path / "other").mkdir()
    other = write_split_model(tmp_path / "other", "model", [f"y.{i}" for i in range(6)], 2)
    shutil.copyfile(other[2], shards[2])  # the last shard now holds two tensors, not one
    with pytest.raises(SplitFileError) as info:
        quantlens.open_weights(shards[0])
    assert "split.tensors.count" in str(info.value)
    assert "5" in str(info.value) and "6" in str(info.value)
    assert info.value.path == str(shards[0])


def _split_kvs(no: int, count: int) -> list[KV]:
    return [
        KV("split.no", UINT16, scalar(UINT16, no)),
        KV("split.count", UINT16, scalar(UINT16, count)),
    ]


def test_split_file_with_an_unsplit_name(tmp_path: Path) -> None:
    path = write(tmp_path / "model.gguf", build_gguf(_split_kvs(0, 2)).data)
    with pytest.raises(SplitFileError) as info:
        quantlens.open_weights(path)
    assert info.value.path == str(path)
    assert "00001-of-00002" in str(info.value)


def test_name_and_split_count_disagree(tmp_path: Path) -> None:
    path = write(tmp_path / "m-00001-of-00003.gguf", build_gguf(_split_kvs(0, 2)).data)
    with pytest.raises(SplitFileError) as info:
        quantlens.open_weights(path)
    assert info.value.path == str(path)


def test_hand_made_split_without_tensors_count(tmp_path: Path) -> None:
    """``split.tensors.count`` is optional; shards may hold no tensors."""
    first = build_gguf(
        [*_split_kvs(0, 2), kv_str("general.name", "hand")],
        [Tensor("a", [8], 0, 0)],
        bytes(32),
    )
    second = build_gguf(_split_kvs(1, 2))
    write(tmp_path / "h-00001-of-00002.gguf", first.data)
    path = write(tmp_path / "h-00002-of-00002.gguf", second.data)
    with quantlens.open_weights(path) as f:
        assert f.split is not None
        assert (f.split.count, f.split.tensors_count) == (2, None)
        assert [t.name for t in f.tensors] == ["a"]
        assert f.metadata["general.name"] == "hand"


def test_split_count_one_is_a_single_file(tmp_path: Path) -> None:
    path = write(tmp_path / "solo.gguf", build_gguf(_split_kvs(0, 1)).data)
    with quantlens.open_weights(path) as f:
        assert f.split is None
        assert f.paths == (path,)


def test_damaged_shard_raises_its_own_error(shards: list[Path]) -> None:
    data = shards[2].read_bytes()
    shards[2].write_bytes(data[: len(data) // 2])
    with pytest.raises(quantlens.TruncatedFileError) as info:
        quantlens.open_weights(shards[0])
    assert info.value.path == str(shards[2])
    shards[2].write_bytes(b"<!DOCTYPE html><html></html>")
    with pytest.raises(quantlens.MalformedFileError) as bad:
        quantlens.open_weights(shards[1])
    assert bad.value.path == str(shards[2])
