"""Dequantization: bit-exact with gguf-py and ggml, every output dtype and destination,
threads, the GIL, fork safety, and the errors callers can make."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gguf
import gguf.quants as gq
import numpy as np
import pytest
import torch
from gguf_builders import Tensor, build_gguf, write
from hypothesis import given, settings
from hypothesis import strategies as st

import quantlens
from quantlens import GGMLQuantizationType as Q
from quantlens import _core
from quantlens.testing import decodable_types, quant_blocks, quantized_tensors

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.json"

# Types gguf-py's pure-Python dequantizer handles (F32 and F16 outside its table).
GGUF_PY_TYPES = [
    t
    for t in decodable_types()
    if t in (Q.F32, Q.F16) or gguf.GGMLQuantizationType(int(t)) in gq._type_traits
]


def gguf_py(data: np.ndarray, qtype: Q) -> np.ndarray:
    return np.asarray(gq.dequantize(data, gguf.GGMLQuantizationType(int(qtype))), np.float32)


def assert_same_bits(ours: np.ndarray, ref: np.ndarray, what: object) -> None:
    """Equal bit for bit; NaNs need only be NaN on both sides (numpy may pick any payload)."""
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    ours_bits = ours.reshape(-1).view(np.uint32)
    ref_bits = np.ascontiguousarray(ref, np.float32).reshape(-1).view(np.uint32)
    both_nan = np.isnan(ours.reshape(-1)) & np.isnan(ref.reshape(-1))
    bad = np.flatnonzero((ours_bits != ref_bits) & ~both_nan)
    assert bad.size == 0, (what, bad[:5], ours.reshape(-1)[bad[:5]], ref.reshape(-1)[bad[:5]])


def ggml_bf16(values: np.ndarray) -> np.ndarray:
    """ggml's f32 -> bf16: round to nearest even; NaNs keep sign and payload, made quiet."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (bits >> 16) | 0x40, rounded).astype(np.uint16)


# -- bit-exact against gguf-py ------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(quantized_tensors(qtypes=GGUF_PY_TYPES, special=True))
def test_float32_equals_gguf_py(t: Any) -> None:
    ours = quantlens.dequantize(t.data, t.qtype)
    assert ours.dtype == np.float32
    assert_same_bits(ours, gguf_py(t.data, t.qtype), t.qtype.name)


@pytest.mark.parametrize("qtype", GGUF_PY_TYPES, ids=lambda t: t.name)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_type_equals_gguf_py(qtype: Q, data: st.DataObject) -> None:
    blocks = data.draw(quant_blocks(qtype, st.integers(1, 12), special=data.draw(st.booleans())))
    raw = np.frombuffer(blocks, np.uint8).reshape(1, -1)
    assert_same_bits(quantlens.dequantize(raw, qtype), gguf_py(raw, qtype), qtype.name)


@settings(max_examples=300, deadline=None)
@given(quantized_tensors(special=True))
def test_16_bit_outputs_round_the_float32_value(t: Any) -> None:
    f32 = quantlens.dequantize(t.data, t.qtype)
    f16 = quantlens.dequantize(t.data, t.qtype, dtype="float16")
    assert f16.dtype == np.float16 and f16.shape == f32.shape
    expected16 = f32.astype(np.float16)
    finite = ~np.isnan(f32)
    assert np.array_equal(f16.view(np.uint16)[finite], expected16.view(np.uint16)[finite])
    assert np.array_equal(np.isnan(f16), ~finite)
    bf16 = quantlens.dequantize(t.data, t.qtype, dtype="bfloat16")
    assert bf16.dtype.name == "bfloat16"
    assert np.array_equal(bf16.view(np.uint16), ggml_bf16(f32))
    # torch rounds the same way; it only canonicalises NaNs.
    torch_bf16 = torch.from_numpy(f32).to(torch.bfloat16).view(torch.int16).numpy()
    assert np.array_equal(bf16.view(np.uint16)[finite], torch_bf16.view(np.uint16)[finite])


def test_strategy_blocks_without_specials_decode_finite() -> None:
    @settings(max_examples=200, deadline=None)
    @given(quantized_tensors())
    def check(t: Any) -> None:
        assert np.isfinite(quantlens.dequantize(t.data, t.qtype)).all(), t.qtype.name

    check()


# -- ggml's own values for every corpus tensor ----------------------------------------------


def _corpus_tensors() -> list[tuple[str, dict[str, Any]]]:
    if not MANIFEST.is_file():
        return []
    files = json.loads(MANIFEST.read_text())["files"]
    return [(f["path"], t) for f in files if f["format"] == "gguf" for t in f["tensors"]]


CORPUS_TENSORS = _corpus_tensors()


@pytest.mark.skipif(not CORPUS_TENSORS, reason=f"corpus manifest not found at {MANIFEST}")
def test_corpus_tensors_equal_ggml_to_float() -> None:
    """Every tensor of every corpus GGUF (big-endian included) decodes to the sha256 of
    ggml's ``to_float`` output recorded in the manifest."""
    checked: dict[str, int] = {}
    files: dict[str, quantlens.GGUFFile] = {}
    for rel, t in CORPUS_TENSORS:
        f = files.setdefault(rel, quantlens.open_weights(CORPUS / rel))
        values = f.get_tensor(t["name"])
        assert values.shape == tuple(t["shape"])
        digest = hashlib.sha256(values.astype("<f4").tobytes()).hexdigest()
        assert digest == t["expected"]["f32_sha256"], (rel, t["name"], t["ggml_type"])
        checked[t["ggml_type"]] = checked.get(t["ggml_type"], 0) + 1
    expected_types = {
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
        "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ2_0", "MXFP4",
    }  # fmt: skip
    assert expected_types <= set(checked), sorted(checked)


# -- destinations ---------------------------------------------------------------------------


SAMPLE = np.frombuffer(bytes(range(256)) * (18 * 64 // 256) + bytes(18 * 64 % 256), np.uint8).copy()
SAMPLE[0::18] = 0x66  # moderate f16 scales at the start of every Q4_0 block
SAMPLE[1::18] = 0x2E


@pytest.mark.parametrize("name", ["float32", "float16", "bfloat16"])
def test_numpy_out_is_filled_and_returned(name: str) -> None:
    expected = quantlens.dequantize(SAMPLE, Q.Q4_0, dtype=name)
    out = np.full((32, 64), 7, dtype=expected.dtype)
    result = quantlens.dequantize(SAMPLE, "Q4_0", out=out)
    assert result is out
    assert np.array_equal(out.reshape(-1).view(np.uint8), expected.reshape(-1).view(np.uint8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_torch_out_and_torch_dtype(dtype: torch.dtype) -> None:
    name = str(dtype).removeprefix("torch.")
    expected = quantlens.dequantize(SAMPLE, Q.Q4_0, dtype=name).view(np.uint8)
    out = torch.empty((64, 32), dtype=dtype)
    assert quantlens.dequantize(SAMPLE, Q.Q4_0, out=out) is out
    assert np.array_equal(out.view(torch.uint8).numpy().reshape(-1), expected.reshape(-1))
    fresh = quantlens.dequantize(SAMPLE, Q.Q4_0, shape=(2, 1024), dtype=dtype)
    assert isinstance(fresh, torch.Tensor) and fresh.dtype == dtype and fresh.shape == (2, 1024)
    assert torch.equal(fresh.reshape(-1), out.reshape(-1))


def test_bad_destinations_and_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="elements"):
        quantlens.dequantize(SAMPLE, Q.Q4_0, out=np.empty(100, np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        quantlens.dequantize(SAMPLE, Q.Q4_0, out=np.empty((64, 64), np.float32)[:, ::2])
    readonly = np.empty(2048, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        quantlens.dequantize(SAMPLE, Q.Q4_0, out=readonly)
    with pytest.raises(ValueError, match="dtype"):
        quantlens.dequantize(SAMPLE, Q.Q4_0, out=np.empty(2048, np.int32))
    with pytest.raises(ValueError, match="asks for"):
        quantlens.dequantize(SAMPLE, Q.Q4_0, dtype="float16", out=np.empty(2048, np.float32))
    with pytest.raises(ValueError, match="threads"):
        quantlens.dequantize(SAMPLE, Q.Q4_0, threads=0)
    with pytest.raises(ValueError, match="whole number"):
        quantlens.dequantize(SAMPLE[:-1], Q.Q4_0)
    with pytest.raises(ValueError, match="shape"):
        quantlens.dequantize(SAMPLE, Q.Q4_0, shape=(3, 3))
    with pytest.raises(ValueError, match="unknown ggml type"):
        quantlens.dequantize(SAMPLE, "Q9_9")
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        quantlens.dequantize(SAMPLE, Q.Q4_0, dtype="int8")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU"):
            quantlens.dequantize(SAMPLE, Q.Q4_0, out=torch.empty(2048, device="cuda"))


def test_undecodable_type_raises_unsupported_type_error() -> None:
    with pytest.raises(quantlens.UnsupportedTypeError, match="Q8_1") as info:
        quantlens.dequantize(np.zeros(36, np.uint8), Q.Q8_1)
    assert isinstance(info.value, NotImplementedError)


# -- tensors of files -----------------------------------------------------------------------


def test_get_tensor_of_the_sample_model() -> None:
    from quantlens.cli import sample_model_path

    with quantlens.open_weights(sample_model_path()) as f:
        for t in f.tensors:
            values = f.get_tensor(t.name)
            assert values.shape == t.shape and values.dtype == np.float32
            raw = f.tensor_bytes(t.name).reshape(*t.shape[:-1], -1)
            assert_same_bits(values, gguf_py(raw, Q(t.type_id)), t.name)
        bf16 = f.get_tensor("token_embd.weight", dtype=torch.bfloat16, threads=1)
        assert isinstance(bf16, torch.Tensor) and tuple(bf16.shape) == (256, 128)


def _unknown_and_q8_1_model(tmp_path: Path) -> Path:
    tensors = [Tensor("q81", (32,), int(Q.Q8_1), 0), Tensor("future", (32,), 99, 64)]
    return write(tmp_path / "odd.gguf", build_gguf(tensors=tensors, data=bytes(128)).data)


def test_unsupported_tensor_types_name_the_tensor(tmp_path: Path) -> None:
    path = _unknown_and_q8_1_model(tmp_path)
    with quantlens.open_weights(path) as f:
        with pytest.raises(quantlens.UnsupportedTypeError, match="'q81'") as info:
            f.get_tensor("q81")
        assert info.value.tensor == "q81" and info.value.path == str(path)
        with pytest.raises(quantlens.UnsupportedTypeError, match="'future'"):
            f.get_tensor("future")


def test_big_endian_data_without_a_defined_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "be.gguf"
    writer = gguf.GGUFWriter(path, "test", endianess=gguf.GGUFEndian.BIG)
    writer.add_tensor(
        "grid", np.zeros((1, 66), np.uint8), raw_dtype=gguf.GGMLQuantizationType.IQ2_XXS
    )
    writer.add_tensor("q8", np.zeros((1, 34), np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with quantlens.open_weights(path) as f:
        assert f.endianness == "big"
        assert not f.get_tensor("q8").any()
        with pytest.raises(quantlens.UnsupportedTypeError, match="big-endian IQ2_XXS"):
            f.get_tensor("grid")


# -- threads, the GIL, fork -----------------------------------------------------------------


def _big_q4_k(weights: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, size=(weights // 256, 144), dtype=np.uint8)
    blocks[:, 0:4] = [0x66, 0x2E, 0x66, 0x2A]  # finite d and dmin
    return blocks


def test_thread_counts_give_identical_results() -> None:
    data = _big_q4_k(1 << 23)  # several tasks of MIN_CHUNK_WEIGHTS (2 Mi)
    one = quantlens.dequantize(data, Q.Q4_K, threads=1)
    for threads in (2, 3, None):
        assert np.array_equal(quantlens.dequantize(data, Q.Q4_K, threads=threads), one)
    bf16 = quantlens.dequantize(data, Q.Q4_K, dtype="bfloat16", threads=2)
    assert np.array_equal(bf16.view(np.uint16), ggml_bf16(one))


def test_the_gil_is_released_while_decoding() -> None:
    """While one thread is inside a long decode, the main thread keeps running Python.
    Were the GIL held for the call, no main-thread step could fall inside it."""
    data = _big_q4_k(1 << 24)
    out = np.empty((len(data), 256), np.float32)
    quantlens.dequantize(data, Q.Q4_K, out=out, threads=1)  # warm up, fault pages in
    window: list[float] = []
    done = threading.Event()

    def decode() -> None:
        window.append(time.perf_counter())
        quantlens.dequantize(data, Q.Q4_K, out=out, threads=1)
        window.append(time.perf_counter())
        done.set()

    steps: list[float] = []
    worker = threading.Thread(target=decode)
    worker.start()
    while not done.is_set():
        steps.append(time.perf_counter())
    worker.join()
    start, end = window
    margin = 0.1 * (end - start)  # leave out the Python around the call
    inside = [t for t in steps if start + margin < t < end - margin]
    assert end - start > 0.002, "decode too short to tell"
    assert len(inside) >= 50, (len(inside), end - start)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available here")
def test_a_forked_child_can_use_threads() -> None:
    data = _big_q4_k(1 << 22)  # two tasks: the pool is used
    expected = quantlens.dequantize(data, Q.Q4_K, threads=2)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # child: must not hang on the parent's pool
        ok = np.array_equal(quantlens.dequantize(data, Q.Q4_K, threads=2), expected)
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the forked child hung decoding with threads")


def _python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_environment_controls_threads_and_kernels() -> None:
    code = "import quantlens._core as c; print(c.default_threads(), c.kernel_isa())"
    threads, _ = _python(code, QUANTLENS_NUM_THREADS="3").split()
    assert threads == "3"
    _, isa = _python(code, QUANTLENS_FORCE_SCALAR="1").split()
    assert isa == "scalar"


# -- the gguf-py drop-in --------------------------------------------------------------------


def test_quants_module_is_a_drop_in_for_gguf_py() -> None:
    from quantlens import quants

    raw = np.ascontiguousarray(np.stack([SAMPLE.reshape(8, -1)] * 3))  # (3, 8, 144)
    ours = quants.dequantize(raw, Q.Q4_0)
    assert_same_bits(ours, gguf_py(raw, Q.Q4_0), "Q4_0 3-D")
    assert ours.shape == (3, 8, 256)
    floats = np.arange(8, dtype=np.float32)
    view = quants.dequantize(floats.view(np.uint8), Q.F32)
    assert np.shares_memory(view, floats) and np.array_equal(view, floats)
    halves = np.linspace(-2, 2, 12, dtype=np.float16).reshape(3, 4)
    assert_same_bits(quants.dequantize(halves, Q.F16), gguf_py(halves, Q.F16), "F16")
    assert quants.quant_shape_to_byte_shape((4, 512), Q.Q4_K) == (4, 288)
    assert quants.quant_shape_from_byte_shape((4, 288), Q.Q4_K) == (4, 512)
    with pytest.raises(NotImplementedError):
        quants.dequantize(np.zeros((1, 36), np.uint8), Q.Q8_1)


def test_core_decodes_every_known_type_but_q8_1() -> None:
    missing = [t.name for t in Q if not _core.can_dequantize(int(t))]
    assert missing == ["Q8_1"]
