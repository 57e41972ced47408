"""``quantlens.torch``: weight files as torch tensors, checked against gguf-py and the
safetensors package; CUDA staging where a GPU is present."""

from __future__ import annotations

import hashlib
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import quantlens
import quantlens.testing
from quantlens.testing import GGUFFileSpec, gguf_files

torch = pytest.importorskip("torch", reason="torch is not installed")
gguf = pytest.importorskip("gguf", reason="gguf-py is not installed (the reference reader)")
import quantlens.torch as qt  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_torch_dequant import assert_same_bits  # noqa: E402

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device: pinned staging not checked")
PLAIN = ["F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64"]
INTS = {"I8", "I16", "I32", "I64"}


def _gguf_py_decodes(name: str) -> bool:
    qtype = gguf.GGMLQuantizationType[name]
    try:
        gguf.quants.dequantize(np.zeros(gguf.GGML_QUANT_SIZES[qtype][1], np.uint8), qtype)
    except NotImplementedError:
        return False
    return True


#: The types both quantlens and the reference, gguf-py, decode.
REFERENCE_TYPES = [t.name for t in quantlens.testing.decodable_types() if _gguf_py_decodes(t.name)]


def same(a: Any, b: Any) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.cpu().view(torch.uint8), b.cpu().view(torch.uint8))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ggml_bf16(values: np.ndarray) -> Any:
    """ggml's f32 -> bf16: round to nearest even; NaNs keep sign and payload, made quiet."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    out = np.where(nan, (bits >> 16) | 0x40, rounded).astype(np.uint16)
    return torch.from_numpy(out.view(np.int16)).view(torch.bfloat16)


class Reference:
    """What gguf-py reads from a GGUF file: each tensor's raw values and float32 weights."""

    def __init__(self, path: Path) -> None:
        reader = gguf.GGUFReader(path)
        self.order = ">" if reader.endianess == gguf.GGUFEndian.BIG else "<"
        self.names = [t.name for t in reader.tensors]
        self.types = {t.name: t.tensor_type.name for t in reader.tensors}
        self.data = {t.name: np.array(t.data) for t in reader.tensors}

    def float32(self, name: str) -> Any:
        data, qtype = self.data[name], gguf.GGMLQuantizationType[self.types[name]]
        if self.types[name] in INTS or self.types[name] == "F64":
            return torch.from_numpy(data.astype(np.float32))
        return torch.from_numpy(np.ascontiguousarray(gguf.quants.dequantize(data, qtype)))

    def own(self, name: str) -> Any:
        """The tensor as gguf-py reads it, in its own torch dtype."""
        kind = self.types[name]
        if kind == "BF16":
            bits = self.data[name].view(f"{self.order}u2")  # gguf-py reads raw bytes
            return torch.from_numpy(bits.astype(np.uint16).view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(self.data[name].astype(self.data[name].dtype.newbyteorder("=")))


def write(spec: GGUFFileSpec) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="quantlens-torch-"))
    spec.write(folder / "model.gguf")
    return folder / "model.gguf"


def check_against_gguf_py(path: Path, big_endian: bool) -> None:
    ref = Reference(path)
    before = digest(path)
    with quantlens.open_weights(path) as f:
        assert list(f.keys()) == ref.names
        own = dict(qt.tensors(f))
        for name in ref.names:
            t = own[name]
            assert tuple(t.shape) == f.tensor(name).shape
            if ref.types[name] in PLAIN:
                expected = ref.own(name).reshape(t.shape)
                assert t.dtype == expected.dtype
                assert_same_bits(t, expected) if t.is_floating_point() else torch.equal(t, expected)
            else:
                assert t.dtype == torch.float32
                assert_same_bits(t, ref.float32(name).reshape(t.shape))
        if big_endian:
            return
        state = qt.load(f, dtype=torch.bfloat16, progress=False)
        assert list(state) == ref.names
        for name, t in state.items():
            if ref.types[name] in INTS:
                assert t.dtype == own[name].dtype  # integers keep their type
                assert torch.equal(t, own[name])
                continue
            assert t.dtype == torch.bfloat16
            assert_same_bits(t, ggml_bf16(ref.float32(name).numpy()).reshape(t.shape))
        # Written into, the zero-copy tensors never reach the file.
        for t in own.values():
            if t.numel():
                t.reshape(-1)[0] = 1
    assert digest(path) == before


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=gguf_files(qtypes=REFERENCE_TYPES, max_tensors=4))
def test_gguf_tensors_match_gguf_py(spec: GGUFFileSpec) -> None:
    check_against_gguf_py(write(spec), big_endian=False)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=gguf_files(qtypes=PLAIN, max_tensors=3, big_endian=True))
def test_big_endian_plain_tensors_match_gguf_py(spec: GGUFFileSpec) -> None:
    check_against_gguf_py(write(spec), big_endian=True)


@pytest.fixture
def mixed_gguf(tmp_path: Path) -> Path:
    """Q4_K, Q6_K, Q8_0, F16, BF16, F32 and I32 tensors of random valid blocks."""
    from quantlens import _core

    writer = gguf.GGUFWriter(str(tmp_path / "mixed.gguf"), "llama")
    rng = np.random.default_rng(3)
    for i, kind in enumerate(["Q4_K", "Q6_K", "Q8_0", "Q4_0", "IQ4_XS"]):
        qtype = gguf.GGMLQuantizationType[kind]
        _, type_size = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, (24, type_size), dtype=np.uint8)
        for encoding, at in _core.scale_fields(int(qtype)):
            assert encoding == "f16"
            scales = rng.uniform(-0.05, 0.05, 24).astype(np.float16)
            raw[:, at : at + 2] = scales.view(np.uint8).reshape(24, 2)
        writer.add_tensor(f"blk.{i}.weight", raw.reshape(4, 6 * type_size), raw_dtype=qtype)
    writer.add_tensor("f16", rng.standard_normal((5, 7)).astype(np.float16))
    bf16 = (rng.standard_normal(33).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    writer.add_tensor("bf16", bf16.view(np.uint8), raw_dtype=gguf.GGMLQuantizationType.BF16)
    writer.add_tensor("norm", rng.standard_normal(64).astype(np.float32))
    writer.add_tensor("ids", np.arange(-5, 11, dtype=np.int32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tmp_path / "mixed.gguf"


def test_own_dtype_tensors_are_zero_copy_and_copy_on_write(mixed_gguf: Path) -> None:
    before = digest(mixed_gguf)
    with quantlens.open_weights(mixed_gguf) as f:
        t = qt.tensor(f, "f16")
        assert t.dtype == torch.float16
        # A view of the file: later reads through this open file see the same memory.
        info = f.tensor("f16")
        assert t.data_ptr() == qt._gguf_storage(f, info.shard).data_ptr() + info.offset
        assert qt.tensor(f, "f16").data_ptr() == t.data_ptr()
        original = t.clone()
        t.fill_(2.5)
        t.add_(1)
        assert torch.all(t == 3.5)
        assert digest(mixed_gguf) == before
        np.testing.assert_array_equal(f.tensor_bytes("f16").view(np.float16), original.reshape(-1))
    with quantlens.open_weights(mixed_gguf) as again:
        assert torch.equal(qt.tensor(again, "f16"), original)


def test_explicit_dtype_decodes_with_the_cpu_kernels(mixed_gguf: Path) -> None:
    with quantlens.open_weights(mixed_gguf) as f:
        for name in f:
            if name == "ids":
                # An explicit dtype converts integers too, when asked for one tensor.
                assert qt.tensor(f, name, torch.float32).dtype == torch.float32
                continue
            for dtype in (torch.float32, torch.float16, torch.bfloat16, "bfloat16"):
                t = qt.tensor(f, name, dtype)
                want = quantlens.dequantize(f.tensor_bytes(name), f.tensor(name).type_name,
                                            f.tensor(name).shape, dtype=t.dtype)  # fmt: skip
                assert_same_bits(t, want)
            # Neither a float32 detour nor a view of the file: fresh, own memory.
            assert qt.tensor(f, name, torch.float64).dtype == torch.float64


def test_load_reports_progress_in_file_order(mixed_gguf: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    state = qt.load(mixed_gguf, progress=False, callback=lambda *a: calls.append(a))
    with quantlens.open_weights(mixed_gguf) as f:
        names = f.keys()
        sizes = [f.tensor(n).nbytes for n in names]
    assert list(state) == names
    assert [c[0] for c in calls] == names
    assert [c[1] for c in calls] == list(np.cumsum(sizes))
    assert {c[2] for c in calls} == {sum(sizes)}
    # The file was opened and closed by load; zero-copy tensors keep their own map.
    assert state["f16"].dtype == torch.float16 and state["blk.0.weight"].dtype == torch.float32
    assert torch.isfinite(state["norm"]).all()


def test_cpu_loads_carve_decoded_tensors_from_one_arena(
    mixed_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    separate = qt.load(mixed_gguf, dtype=torch.bfloat16, progress=False)
    monkeypatch.setattr(qt, "_ARENA_MIN_BYTES", 0)
    state = qt.load(mixed_gguf, dtype=torch.bfloat16, progress=False)
    assert list(state) == list(separate)
    for name, t in state.items():
        assert same(t, separate[name]), name
    decoded = [t for n, t in state.items() if n.startswith("blk.")]
    assert len({t.untyped_storage().data_ptr() for t in decoded}) == 1
    spans = sorted((t.data_ptr(), t.data_ptr() + t.nbytes) for t in decoded)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    # Disjoint views: safetensors saves them as separate tensors.
    from safetensors.torch import load_file, save_file

    save_file(state, tmp_path / "copy.safetensors")
    again = load_file(tmp_path / "copy.safetensors")
    assert all(same(again[n], t) for n, t in state.items())


def test_load_shows_a_progress_bar(mixed_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qt.load(mixed_gguf, progress=True)
    assert "load" in capsys.readouterr().err
    qt.load(mixed_gguf, progress=False)
    assert capsys.readouterr().err == ""


def test_bad_options_are_refused(mixed_gguf: Path) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        qt.load(mixed_gguf, "cpu", gpu_dequant=True)
    with pytest.raises(ValueError, match="gpu_dequant"):
        qt.load(mixed_gguf, "cpu", gpu_dequant="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        qt.load(mixed_gguf, dtype="int4")
    with quantlens.open_weights(mixed_gguf) as f, pytest.raises(quantlens.TensorNotFoundError):
        qt.tensor(f, "missing")
    with pytest.raises(ValueError, match="CUDA"):
        qt.PinnedStager("cpu")


def test_safetensors_tensors_match_the_safetensors_package(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = {
        "bf16": torch.randn(6, 5).to(torch.bfloat16),
        "f16": torch.randn(3, 9).to(torch.float16),
        "f8": torch.randn(17).to(torch.float8_e4m3fn),
        "f32": torch.randn(2, 2, 2),
        "i64": torch.arange(-3, 9, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, path)
    before = digest(path)
    ref = load_file(path)
    state = qt.load(path, progress=False)
    assert list(state) == list(ref)  # file order
    for name, t in state.items():
        assert t.dtype == ref[name].dtype
        assert torch.equal(t.view(torch.uint8), ref[name].view(torch.uint8))
        t.reshape(-1)[0] = t.reshape(-1)[1]  # copy-on-write: never reaches the file
    assert digest(path) == before
    converted = qt.load(path, dtype=torch.float16, progress=False)
    assert converted["i64"].dtype == torch.int64 and converted["mask"].dtype == torch.bool
    for name in ("bf16", "f8", "f32"):
        assert torch.equal(converted[name], ref[name].to(torch.float16))
    assert qt.to(converted, "cpu")["f32"].dtype == torch.float16


# -- CUDA -------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("dtype", [None, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gpu_dequant", [False, True])
def test_cuda_load_equals_cpu_load(mixed_gguf: Path, dtype: Any, gpu_dequant: bool) -> None:
    cpu = qt.load(mixed_gguf, "cpu", dtype, progress=False)
    gpu = qt.load(mixed_gguf, "cuda:0", dtype, progress=False, gpu_dequant=gpu_dequant)
    assert list(gpu) == list(cpu)
    for name, t in gpu.items():
        assert t.device == torch.device("cuda", 0)
        assert same(t, cpu[name]), name


@needs_cuda
def test_cuda_tensors_larger_than_the_pinned_buffers_arrive_whole() -> None:
    """A 5 MiB Q4_K tensor through 1 MiB buffers: many pieces, the ring reused."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (5 << 20) // 144 * 144, dtype=np.uint8)
    blocks.reshape(-1, 144)[:, 0:4] = np.frombuffer(
        np.float16([0.01, 0.002]).tobytes() * (blocks.size // 144), np.uint8
    ).reshape(-1, 4)
    want = quantlens.dequantize(blocks, "Q4_K", dtype=torch.bfloat16)
    with qt.PinnedStager("cuda", buffer_bytes=1 << 20, buffers=2) as stager:
        decoded = stager.empty(tuple(want.shape), torch.bfloat16)
        stager.upload_decoded(blocks, quantlens.GGMLQuantizationType.Q4_K, decoded)
        raw = stager.empty((blocks.size,), torch.uint8)
        stager.upload(blocks, raw)
        stager.hand_over(decoded)
        stager.hand_over(raw)
    assert same(decoded, want)
    assert torch.equal(raw.cpu(), torch.from_numpy(blocks))


@needs_cuda
def test_tensors_tensor_and_to_on_cuda(mixed_gguf: Path, tmp_path: Path) -> None:
    with quantlens.open_weights(mixed_gguf) as f:
        for name, t in qt.tensors(f, torch.bfloat16, "cuda:0"):
            dtype = t.dtype  # bfloat16, or an integer type kept as it is
            assert dtype == torch.bfloat16 or name == "ids"
            assert same(t, qt.tensor(f, name, dtype))
            assert same(qt.tensor(f, name, dtype, device="cuda"), t)
        cpu = dict(qt.tensors(f))
    moved = qt.to(cpu, "cuda:0")
    assert all(same(moved[n], cpu[n]) and moved[n].is_cuda for n in cpu)

    from safetensors.torch import save_file

    path = tmp_path / "s.safetensors"
    save_file({"a": torch.randn(300, 301).to(torch.bfloat16), "b": torch.arange(7)}, path)
    gpu = qt.load(path, "cuda:0", torch.float16, progress=False)
    ref = qt.load(path, "cpu", torch.float16, progress=False)
    assert all(same(gpu[n], ref[n]) for n in ref)
