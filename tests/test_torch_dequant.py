"""Dequantization with torch operations (``quantlens._torch_dequant``) against the CPU
kernels, bit for bit, on CPU tensors here and on the GPU where one is present."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quantlens
from quantlens import _torch_dequant
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType
from quantlens.testing import QuantizedTensor, quant_blocks, quantized_tensors

torch = pytest.importorskip("torch", reason="torch is not installed")

#: The types the torch decoders must cover.
REQUIRED = [
    "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS",
]  # fmt: skip
TYPES = sorted(_torch_dequant.SUPPORTED_TYPES, key=int)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device: GPU decoding not checked")


def assert_same_bits(ours: Any, ref: Any) -> None:
    """Equal bit for bit; where the reference is NaN ours need only be NaN (IEEE 754 leaves
    which NaN an operation returns to the hardware)."""
    ours, ref = ours.detach().cpu().reshape(-1), ref.detach().cpu().reshape(-1)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    bits = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}[ref.element_size()]
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(ours), nan), "NaNs differ in position"
    bad = torch.nonzero((ours.view(bits) != ref.view(bits)) & ~nan).reshape(-1)
    if bad.numel():
        i = int(bad[0])
        raise AssertionError(
            f"{bad.numel()} weights differ; first at {i}: "
            f"{int(ours.view(bits)[i]):#x} != {int(ref.view(bits)[i]):#x}"
        )


def reference(data: np.ndarray, qtype: GGMLQuantizationType, dtype: Any) -> Any:
    """The CPU kernels' weights for flat bytes ``data``, as a flat torch tensor."""
    return quantlens.dequantize(data.reshape(-1), qtype, dtype=dtype)


def test_every_required_type_is_supported() -> None:
    missing = [t for t in REQUIRED if not _torch_dequant.can_dequantize(t)]
    assert not missing
    assert not _torch_dequant.can_dequantize("IQ2_XXS")
    assert not _torch_dequant.can_dequantize("no such type")


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_blocks_match_the_cpu_kernels(
    qtype: GGMLQuantizationType, dtype: Any, data: st.DataObject
) -> None:
    special = data.draw(st.booleans(), label="special")
    raw = np.frombuffer(data.draw(quant_blocks(qtype, special=special)), dtype=np.uint8)
    ours = _torch_dequant.dequantize(torch.from_numpy(raw.copy()), qtype, dtype=dtype)
    assert ours.dtype == dtype
    assert_same_bits(ours, reference(raw, qtype, dtype))


@settings(max_examples=60, deadline=None)
@given(t=quantized_tensors(qtypes=TYPES, special=True), dtype=st.sampled_from(DTYPES))
def test_tensors_keep_their_shape(t: QuantizedTensor, dtype: Any) -> None:
    ours = _torch_dequant.dequantize(torch.from_numpy(t.data), t.qtype, t.shape, dtype)
    ref = quantlens.dequantize(t.data, t.qtype, t.shape, dtype=dtype)
    assert tuple(ours.shape) == t.shape
    assert_same_bits(ours, ref)


@pytest.mark.parametrize("qtype", ["Q4_K", "Q6_K", "Q5_0"])
def test_chunked_decoding_into_out_matches(qtype: str) -> None:
    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    raw = np.random.default_rng(1).integers(0, 256, 37 * type_size, dtype=np.uint8)
    out = torch.full((37 * block_size,), 7.0, dtype=torch.bfloat16)
    # Chunks of 3 blocks (and a short last one): every chunk lands in its own place.
    got = _torch_dequant.dequantize(
        torch.from_numpy(raw), qtype, out=out, chunk_weights=3 * block_size
    )
    assert got is out
    assert_same_bits(out, reference(raw, GGMLQuantizationType[qtype], torch.bfloat16))


def test_special_scales_round_like_ggml() -> None:
    """Q8_0 blocks whose f16 scale is inf, NaN, subnormal or the largest finite value."""
    scales = [0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01, 0x0001, 0x8001, 0x7BFF, 0x0000]
    blocks = bytearray()
    for s in scales:
        blocks += s.to_bytes(2, "little") + bytes(range(0, 256, 8))
    raw = np.frombuffer(bytes(blocks), dtype=np.uint8)
    for dtype in DTYPES:
        ours = _torch_dequant.dequantize(torch.from_numpy(raw.copy()), "Q8_0", dtype=dtype)
        ref = reference(raw, GGMLQuantizationType.Q8_0, dtype)
        assert_same_bits(ours, ref)
        if dtype != torch.float32:
            # The CPU kernels quiet NaNs but keep their sign; so must we.
            nan = torch.isnan(ref)
            signs = ours.view(torch.int16)[nan] < 0
            assert torch.equal(signs, ref.view(torch.int16)[nan] < 0)


def test_bad_arguments_are_refused() -> None:
    blocks = torch.zeros(18, dtype=torch.uint8)
    with pytest.raises(ValueError, match="whole number"):
        _torch_dequant.dequantize(blocks[:17], "Q4_0")
    with pytest.raises(TypeError, match="uint8"):
        _torch_dequant.dequantize(blocks.to(torch.int8), "Q4_0")
    with pytest.raises(ValueError, match="no torch decoder"):
        _torch_dequant.dequantize(torch.zeros(66, dtype=torch.uint8), "IQ2_XXS")
    with pytest.raises(ValueError, match="shape"):
        _torch_dequant.dequantize(blocks, "Q4_0", shape=(3, 11))
    with pytest.raises(ValueError, match="32 elements"):
        _torch_dequant.dequantize(blocks, "Q4_0", out=torch.empty(31))
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        _torch_dequant.dequantize(blocks, "Q4_0", out=torch.empty(32, dtype=torch.float64))


TRITON_CHECK = """
import numpy as np, torch, quantlens
from quantlens import _torch_dequant
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType as T
from test_torch_dequant import assert_same_bits
rng = np.random.default_rng(5)
for qtype in (T.Q4_K, T.Q6_K):
    type_size = GGML_QUANT_SIZES[qtype][1]
    for n in (1, 8, 13):  # a partial last program masks its tail
        raw = rng.integers(0, 256, n * type_size, dtype=np.uint8)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            out = torch.empty(n * 256, dtype=dtype)
            rows = torch.from_numpy(raw).view(n, type_size)
            assert _torch_dequant._triton_dequantize(rows, qtype, out)
            assert_same_bits(out, quantlens.dequantize(raw, qtype, dtype=dtype))
print("triton kernels match")
"""


def test_triton_kernels_match_the_cpu_kernels_under_the_interpreter() -> None:
    """The Triton kernels' indexing and rounding, run by Triton's CPU interpreter."""
    pytest.importorskip("triton", reason="triton is not installed")
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), *sys.path])
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", TRITON_CHECK],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "triton kernels match" in done.stdout


@needs_cuda
@pytest.mark.parametrize("triton", [True, False], ids=["triton", "torch-ops"])
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_gpu_decoding_matches_the_cpu_kernels(
    qtype: GGMLQuantizationType, triton: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_torch_dequant, "USE_TRITON", triton)
    _, type_size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(int(qtype))
    # Random bytes: every kind of f16 scale, NaN and infinity included, appears.
    raw = rng.integers(0, 256, 4099 * type_size, dtype=np.uint8)
    blocks = torch.from_numpy(raw).to("cuda")
    for dtype in DTYPES:
        ours = _torch_dequant.dequantize(blocks, qtype, dtype=dtype, chunk_weights=1000 * 256)
        assert ours.device.type == "cuda"
        assert_same_bits(ours, reference(raw, qtype, dtype))
