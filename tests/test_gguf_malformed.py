"""Hostile and broken files: every failure is a typed ``QuantlensError``, fast and small.

Files are truncated at every byte, mutated at random, or written by hand with claims
no reader should trust (huge counts and lengths, deep nesting, overflowing shapes,
data outside the file).
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from gguf import GGUFEndian
from gguf_builders import (
    ARRAY,
    BOOL,
    FLOAT32,
    INT32,
    KV,
    STRING,
    UINT8,
    UINT64,
    Tensor,
    build_gguf,
    kv_str,
    kv_u32,
    scalar,
    write,
    write_small_model,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import quantlens
from quantlens import GGUFFile, MetadataArray
from quantlens.exceptions import (
    LimitExceededError,
    MalformedFileError,
    QuantlensError,
    TruncatedFileError,
    UnsupportedFormatError,
    UnsupportedTypeError,
    UnsupportedVersionError,
)

MiB = 1 << 20


def _max_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if os.uname().sysname == "Darwin" else rss * 1024


def _touch_everything(f: GGUFFile) -> None:
    """Read every value and every tensor of an open file."""
    for value in f.metadata.values():
        if isinstance(value, MetadataArray):
            value.tolist()
            if value.element_type not in ("STRING", "ARRAY"):
                value.to_numpy()
    for t in f.tensors:
        try:
            data = f.tensor_bytes(t.name)
        except UnsupportedTypeError:
            assert t.nbytes is None
        else:
            assert data.nbytes == t.nbytes
            data.tobytes()


# -- (a) truncation ---------------------------------------------------------------------


@pytest.mark.parametrize("endian", [GGUFEndian.LITTLE, GGUFEndian.BIG], ids=["le", "be"])
def test_every_truncation_raises_a_typed_error(tmp_path: Path, endian: GGUFEndian) -> None:
    full_path = write_small_model(tmp_path / "full.gguf", endian=endian)
    full = full_path.read_bytes()
    with GGUFFile(full_path) as f:
        reference = [(t.name, t.offset, t.nbytes) for t in f.tensors]
        data_end = max(t.offset + t.nbytes for t in f.tensors)
    assert data_end < len(full), "the writer pads after the last tensor"

    path = tmp_path / "cut.gguf"
    for cut in range(len(full)):
        path.write_bytes(full[:cut])
        if cut >= data_end:
            # Only trailing padding is missing: the file is complete.
            with GGUFFile(path) as f:
                assert [(t.name, t.offset, t.nbytes) for t in f.tensors] == reference
            continue
        with pytest.raises(MalformedFileError) as info:
            GGUFFile(path)
        err = info.value
        assert type(err) in (TruncatedFileError, MalformedFileError), (cut, err)
        assert err.path == str(path), cut
        assert isinstance(err.offset, int) and not isinstance(err.offset, bool), cut
        if "data of tensor" in str(err):
            # Where the missing data should start, which may be past the cut.
            assert 0 <= err.offset < len(full), (cut, err)
        else:
            assert 0 <= err.offset <= cut, (cut, err)
        assert str(path) in str(err)
        # Through open_weights, a cut inside the magic is not GGUF at all.
        expected = UnsupportedFormatError if cut < 4 else type(err)
        with pytest.raises(expected):
            quantlens.open_weights(path)


# -- (b) random damage to the header ----------------------------------------------------


def _small_model_bytes() -> tuple[bytes, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_small_model(Path(tmp) / "m.gguf")
        with GGUFFile(path) as f:
            return path.read_bytes(), f.data_offset


SMALL, SMALL_DATA_OFFSET = _small_model_bytes()


def _open_damaged(data: bytes) -> None:
    """Open damaged bytes: either it opens (and reads) or fails with a QuantlensError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "damaged.gguf"
        path.write_bytes(data)
        try:
            with GGUFFile(path) as f:
                _touch_everything(f)
        except QuantlensError as err:
            assert err.path == str(path)
            assert err.offset is None or 0 <= err.offset <= 2**64
        # Any other exception, or a crash, fails the test.


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, SMALL_DATA_OFFSET - 1), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    )
)
def test_damaged_header_bytes(changes: list[tuple[int, int]]) -> None:
    data = bytearray(SMALL)
    for at, byte in changes:
        data[at] = byte
    _open_damaged(bytes(data))


@settings(max_examples=100, deadline=None)
@given(st.integers(8, SMALL_DATA_OFFSET - 8), st.sampled_from([0, 1, 2**31, 2**63, 2**64 - 1]))
def test_damaged_header_words(at: int, value: int) -> None:
    """Extreme 64-bit values written over any field (counts, lengths, dims, offsets)."""
    data = bytearray(SMALL)
    data[at : at + 8] = struct.pack("<Q", value)
    _open_damaged(bytes(data))


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=0, max_size=512))
def test_random_bytes_after_the_magic(tail: bytes) -> None:
    _open_damaged(b"GGUF" + tail)
    _open_damaged(b"GGUF\x03\x00\x00\x00" + tail)


# -- (c) crafted files ------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    """An array payload nested ``depth`` arrays deep, holding one UINT8."""
    return (
        b"".join(struct.pack("<IQ", ARRAY, 1) for _ in range(depth - 1))
        + struct.pack("<IQ", UINT8, 1)
        + b"\x01"
    )


ZEROS = bytes(256)

# name -> (file bytes, expected error, message fragment)
CRAFTED: dict[str, tuple[bytes, type[Exception], str]] = {
    "huge_tensor_count": (build_gguf(tensor_count=2**63).data, LimitExceededError, "tensor count"),
    "tensor_count_beyond_file": (
        build_gguf(tensor_count=1 << 22).data,
        TruncatedFileError,
        "tensor count",
    ),
    "huge_kv_count": (build_gguf(kv_count=2**64 - 1).data, LimitExceededError, "metadata count"),
    "kv_count_beyond_file": (build_gguf(kv_count=1 << 20).data, TruncatedFileError, "metadata"),
    "huge_string_length": (
        build_gguf([KV("a", STRING, struct.pack("<Q", 2**63))]).data,
        LimitExceededError,
        "string length",
    ),
    "string_beyond_file": (
        build_gguf([KV("a", STRING, struct.pack("<Q", 2**27) + b"xyz")]).data,
        TruncatedFileError,
        "string",
    ),
    "huge_key_length": (
        build_gguf(kv_count=1).data[:24] + struct.pack("<Q", 2**62) + ZEROS,
        LimitExceededError,
        "key",
    ),
    "huge_array_length": (
        build_gguf([KV("a", ARRAY, struct.pack("<IQ", UINT8, 2**62))]).data,
        LimitExceededError,
        "array length",
    ),
    "array_beyond_file": (
        build_gguf([KV("a", ARRAY, struct.pack("<IQ", STRING, 2**31))]).data,
        TruncatedFileError,
        "array",
    ),
    "nesting_depth_100": (
        build_gguf([KV("a", ARRAY, _nested(100))]).data,
        LimitExceededError,
        "depth",
    ),
    "n_dims_100": (
        build_gguf(tensors=[Tensor("t", [1] * 100, 0, 0)], data=ZEROS).data,
        LimitExceededError,
        "dimension count",
    ),
    "n_dims_huge": (
        build_gguf(tensors=[Tensor("t", [1], 0, 0, n_dims=2**32 - 1)], data=ZEROS).data,
        LimitExceededError,
        "dimension count",
    ),
    "dim_product_overflows": (
        build_gguf(tensors=[Tensor("t", [2**32, 2**32, 2], 0, 0)], data=ZEROS).data,
        MalformedFileError,
        "overflow",
    ),
    "byte_size_overflows": (
        build_gguf(tensors=[Tensor("t", [2**62, 1], 0, 0)], data=ZEROS).data,
        MalformedFileError,
        "overflow",
    ),
    "negative_dim": (
        build_gguf(tensors=[Tensor("t", [2**64 - 1], 0, 0)], data=ZEROS).data,
        LimitExceededError,
        "dimension",
    ),
    "offset_past_end": (
        build_gguf(tensors=[Tensor("t", [8], 0, 1024)], data=ZEROS[:32]).data,
        TruncatedFileError,
        "data of tensor 't'",
    ),
    "offset_overflows": (
        build_gguf(tensors=[Tensor("t", [8], 0, 2**64 - 32)], data=ZEROS[:32]).data,
        MalformedFileError,
        "overflow",
    ),
    "data_past_end": (
        build_gguf(tensors=[Tensor("t", [64], 0, 0)], data=ZEROS[:32]).data,
        TruncatedFileError,
        "data of tensor 't'",
    ),
    "misaligned_offset": (
        build_gguf(tensors=[Tensor("t", [4], 0, 4)], data=ZEROS[:64]).data,
        MalformedFileError,
        "alignment",
    ),
    "partial_block": (
        build_gguf(tensors=[Tensor("t", [33], 8, 0)], data=ZEROS).data,
        MalformedFileError,
        "block size",
    ),
    "unknown_value_type": (
        build_gguf([KV("a", 13, ZEROS[:8])]).data,
        MalformedFileError,
        "value type 13",
    ),
    "unknown_array_element_type": (
        build_gguf([KV("a", ARRAY, struct.pack("<IQ", 99, 1) + ZEROS[:8])]).data,
        MalformedFileError,
        "value type 99",
    ),
    "overlapping_tensors": (
        build_gguf(
            tensors=[Tensor("a", [16], 0, 0), Tensor("b", [8], 0, 32)], data=ZEROS[:96]
        ).data,
        MalformedFileError,
        "overlaps",
    ),
    "same_data_twice": (
        build_gguf(tensors=[Tensor("a", [8], 0, 0), Tensor("b", [8], 0, 0)], data=ZEROS).data,
        MalformedFileError,
        "overlaps",
    ),
    "duplicate_key": (
        build_gguf([kv_u32("a.b", 1), kv_u32("a.b", 2)]).data,
        MalformedFileError,
        "duplicate metadata key 'a.b'",
    ),
    "duplicate_tensor_name": (
        build_gguf(tensors=[Tensor("w", [8], 0, 0), Tensor("w", [8], 0, 32)], data=ZEROS).data,
        MalformedFileError,
        "duplicate tensor name 'w'",
    ),
    "key_not_utf8": (
        build_gguf([kv_u32(b"\xff\xfe", 1)]).data,
        MalformedFileError,
        "UTF-8",
    ),
    "alignment_0": (
        build_gguf([kv_u32("general.alignment", 0)]).data,
        MalformedFileError,
        "general.alignment",
    ),
    "alignment_7": (
        build_gguf([kv_u32("general.alignment", 7)], alignment=7).data,
        MalformedFileError,
        "general.alignment",
    ),
    "alignment_huge": (
        build_gguf([kv_u32("general.alignment", 2**31)]).data,
        MalformedFileError,
        "general.alignment",
    ),
    "alignment_uint64": (
        build_gguf([KV("general.alignment", UINT64, scalar(UINT64, 32))]).data,
        MalformedFileError,
        "general.alignment",
    ),
    "alignment_string": (
        build_gguf([kv_str("general.alignment", "32")]).data,
        MalformedFileError,
        "general.alignment",
    ),
    "version_1": (build_gguf(version=1).data, UnsupportedVersionError, "convert"),
    "version_4": (build_gguf(version=4).data, UnsupportedVersionError, "version 4"),
    "version_0": (build_gguf(version=0).data, UnsupportedVersionError, "version 0"),
    "version_1_big_endian": (
        build_gguf(version=1, endian=">").data,
        UnsupportedVersionError,
        "version 1",
    ),
    "bad_magic": (build_gguf(magic=b"GGUG").data, MalformedFileError, "GGUF"),
    "empty": (b"", TruncatedFileError, "magic"),
    "seven_bytes": (b"GGUF\x03\x00\x00", TruncatedFileError, "magic"),
}

# Claims of enormous sizes: the reader must refuse them before allocating anything.
HUGE_CLAIMS = {
    "huge_tensor_count",
    "tensor_count_beyond_file",
    "huge_kv_count",
    "kv_count_beyond_file",
    "huge_string_length",
    "string_beyond_file",
    "huge_key_length",
    "huge_array_length",
    "array_beyond_file",
    "n_dims_huge",
    "offset_past_end",
    "byte_size_overflows",
}


def _timed(fn: Callable[[], object]) -> tuple[BaseException | None, float, int]:
    rss = _max_rss_bytes()
    start = time.perf_counter()
    try:
        fn()
    except BaseException as err:
        return err, time.perf_counter() - start, _max_rss_bytes() - rss
    return None, time.perf_counter() - start, _max_rss_bytes() - rss


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_file_raises_typed_error(tmp_path: Path, name: str) -> None:
    data, expected, fragment = CRAFTED[name]
    path = write(tmp_path / f"{name}.gguf", data)
    err, seconds, grown = _timed(lambda: GGUFFile(path))
    assert err is not None, f"{name}: opened without error"
    assert type(err) is expected, f"{name}: {type(err).__name__}: {err}"
    assert fragment in str(err), f"{name}: {err}"
    assert isinstance(err, QuantlensError) and err.path == str(path)
    if isinstance(err, MalformedFileError):
        assert isinstance(err.offset, int) and 0 <= err.offset <= len(data) + 2048
        assert isinstance(err, ValueError)
    assert seconds < 1.0, f"{name}: took {seconds:.3f} s"
    if name in HUGE_CLAIMS:
        assert grown < 200 * MiB, f"{name}: peak memory grew by {grown / MiB:.0f} MiB"


def test_crafted_huge_claims_are_cheap_together(tmp_path: Path) -> None:
    """All huge claims opened many times: no time or memory is spent on what they claim."""
    paths = [write(tmp_path / f"{n}.gguf", CRAFTED[n][0]) for n in sorted(HUGE_CLAIMS)]

    def open_all() -> None:
        for _ in range(20):
            for p in paths:
                with pytest.raises(MalformedFileError):
                    GGUFFile(p)

    err, seconds, grown = _timed(open_all)
    assert err is None, err
    assert seconds < 1.0
    assert grown < 200 * MiB


def test_unknown_ggml_type_is_listed_but_not_read(tmp_path: Path) -> None:
    tensors = [Tensor("known", [8], 0, 0), Tensor("mystery", [8], 4, 32), Tensor("x", [8], 999, 64)]
    path = write(tmp_path / "unknown.gguf", build_gguf(tensors=tensors, data=ZEROS[:96]).data)
    with GGUFFile(path) as f:
        assert [t.type_id for t in f.tensors] == [0, 4, 999]
        mystery = f.tensor("mystery")
        assert mystery.type_name == "UNKNOWN_4"
        assert mystery.nbytes is None
        assert mystery.n_elements == 8
        assert f.tensor("x").type_name == "UNKNOWN_999"
        assert f.tensor_bytes("known").nbytes == 32
        for name in ("mystery", "x"):
            with pytest.raises(UnsupportedTypeError) as info:
                f.tensor_bytes(name)
            assert info.value.tensor == name
            assert info.value.path == str(path)
            assert name in str(info.value)


def test_nesting_at_the_limit_opens(tmp_path: Path) -> None:
    """``Limits.max_depth`` levels of arrays open and read back nested; one more fails."""
    from quantlens import Limits

    for limits in (Limits(max_depth=8), Limits()):
        depth = limits.max_depth
        path = write(tmp_path / "deep.gguf", build_gguf([KV("a", ARRAY, _nested(depth))]).data)
        with GGUFFile(path, limits=limits) as f:
            value = f.metadata["a"]
            for _ in range(depth - 1):
                assert value.element_type == "ARRAY" and len(value) == 1
                value = value[0]
            assert value.element_type == "UINT8" and value.tolist() == [1]
            if depth == 8:
                assert f.metadata["a"].tolist() == [[[[[[[[1]]]]]]]]
        deeper = build_gguf([KV("a", ARRAY, _nested(depth + 1))]).data
        path = write(tmp_path / "deeper.gguf", deeper)
        with pytest.raises(LimitExceededError) as info:
            GGUFFile(path, limits=limits)
        assert info.value.setting == "max_depth"


def test_values_of_every_scalar_type_in_crafted_file(tmp_path: Path) -> None:
    """A sanity check that the crafted files above are read as intended when valid."""
    kvs = [
        kv_u32("u", 7),
        KV("i", INT32, scalar(INT32, -7)),
        KV("f", FLOAT32, scalar(FLOAT32, 0.5)),
        KV("b", BOOL, scalar(BOOL, True)),
        kv_str("s", "x"),
    ]
    path = write(tmp_path / "ok.gguf", build_gguf(kvs).data)
    with GGUFFile(path) as f:
        assert dict(f.metadata) == {"u": 7, "i": -7, "f": 0.5, "b": True, "s": "x"}


def test_bad_magic_through_open_weights(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.gguf", build_gguf(magic=b"GGUG").data)
    with pytest.raises(UnsupportedFormatError) as info:
        quantlens.open_weights(path)
    assert info.value.path == str(path)
    with pytest.raises(MalformedFileError) as malformed:
        GGUFFile(path)
    assert malformed.value.offset == 0


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab12\nsize 4096\n", "Git LFS"),
        (b"<!DOCTYPE html>\n<html><head><title>404</title></head></html>\n", "HTML"),
        (b"  <html><body>Rate limited</body></html>", "HTML"),
    ],
    ids=["empty", "git-lfs", "html", "html-lower"],
)
def test_not_gguf_named_gguf(tmp_path: Path, content: bytes, says: str) -> None:
    path = write(tmp_path / "model.gguf", content)
    start = time.perf_counter()
    with pytest.raises(UnsupportedFormatError) as info:
        quantlens.open_weights(path)
    assert time.perf_counter() - start < 1.0
    assert says in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)


# -- (d) operating-system errors --------------------------------------------------------


@pytest.mark.parametrize(
    "opener", [quantlens.open_weights, GGUFFile], ids=["open_weights", "GGUFFile"]
)
def test_missing_file(tmp_path: Path, opener: Callable[[Path], object]) -> None:
    path = tmp_path / "nope.gguf"
    with pytest.raises(FileNotFoundError) as info:
        opener(path)
    assert info.value.filename == str(path)


@pytest.mark.parametrize(
    "opener", [quantlens.open_weights, GGUFFile], ids=["open_weights", "GGUFFile"]
)
def test_directory(tmp_path: Path, opener: Callable[[Path], object]) -> None:
    folder = tmp_path / "model.gguf"
    folder.mkdir()
    with pytest.raises(OSError) as info:
        opener(folder)
    assert not isinstance(info.value, QuantlensError)
    assert info.value.filename == str(folder)


@pytest.mark.parametrize("opener", ["open_weights", "GGUFFile"])
def test_no_permission(opener: str) -> None:
    """An unreadable file raises PermissionError naming it. Root ignores file permissions,
    so as root the check runs in a child process that drops to the ``nobody`` user once
    quantlens is imported."""
    with tempfile.TemporaryDirectory() as tmp:  # under /tmp: anyone may look inside
        folder = Path(tmp)
        folder.chmod(0o755)
        path = write_small_model(folder / "locked.gguf")
        path.chmod(0)
        drop = "import os; os.setgid(65534); os.setuid(65534)\n" if os.geteuid() == 0 else ""
        code = (
            "import sys, quantlens\n"
            f"{drop}"
            f"opener = getattr(quantlens, {opener!r})\n"
            "try:\n"
            "    opener(sys.argv[1])\n"
            "except PermissionError as e:\n"
            "    print('PermissionError', e.filename)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True
        )
        assert result.stdout.split() == ["PermissionError", str(path)], result.stderr
