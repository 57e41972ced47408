"""Quantization: byte-identical with ggml's ``ggml_quantize_chunk`` on generated inputs
(directly, through llama-cpp-python's libggml, or against recorded outputs when that is not
installed), float16/bfloat16/torch inputs, importance matrices, round trips through
gguf-py's dequantizer, the gguf-py compatible ``quants.quantize``, threads, the GIL and the
errors callers can make.

NaN and infinity policy: no input makes quantlens panic or abort, and it writes the bytes
ggml writes on x86-64 for NaN/inf weights on the reference paths of Q4_0..Q8_0 and on
IQ4_NL/IQ4_XS (tested below); the k-quants and the importance-weighted legacy paths match
ggml on finite inputs, not yet on every non-finite one (test_known_non_finite_divergence).
"""

from __future__ import annotations

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
from hypothesis import given, settings
from hypothesis import strategies as st
from quantize_inputs import FINITE_KINDS, KINDS, importance, rows

import quantlens
import quantlens.quants
from quantlens import GGML_QUANT_SIZES
from quantlens import GGMLQuantizationType as Q
from quantlens.encode import accepts_imatrix

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "quantize_golden.npz"

# Every type quantlens quantizes.
TYPES = [
    Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0,
    Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K,
    Q.IQ4_NL, Q.IQ4_XS,
]  # fmt: skip
LEGACY = (Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1)


def nonfinite_exact(qtype: Q, imatrix: bool) -> bool:
    """Whether NaN/inf inputs are known to give ggml's bytes: the reference paths of the
    32-weight types and both IQ4 paths. The k-quants and the importance-weighted legacy
    paths match ggml on finite blocks only (see
    test_non_finite_inputs_spoil_only_their_own_blocks)."""
    if qtype in (Q.IQ4_NL, Q.IQ4_XS, Q.Q8_0):
        return True
    return qtype in LEGACY and not imatrix


def _load_ggml() -> Any:
    sys.path.insert(0, str(ROOT / "benches"))
    try:
        from ggml_ref import Ggml

        return Ggml()
    except (ImportError, FileNotFoundError, OSError) as err:
        print(f"ggml reference unavailable ({err}); using {GOLDEN.name} only")
        return None
    finally:
        sys.path.remove(str(ROOT / "benches"))


GGML = _load_ggml()
needs_ggml = pytest.mark.skipif(
    GGML is None,
    reason="llama-cpp-python's libggml is not installed: the recorded outputs in "
    "tests/data/quantize_golden.npz stand in for it (test_recorded_ggml_outputs)",
)


def ggml_quantize(x: np.ndarray, qtype: Q, imatrix: np.ndarray | None = None) -> np.ndarray:
    block, size = GGML_QUANT_SIZES[qtype]
    flat = GGML.quantize(int(qtype), x.reshape(-1, x.shape[-1]), size, block, imatrix)
    return np.asarray(flat).reshape(*x.shape[:-1], -1)


def assert_same_bytes(ours: np.ndarray, ref: np.ndarray, what: object) -> None:
    assert ours.dtype == np.uint8 and ours.shape == ref.shape, (what, ours.shape, ref.shape)
    bad = np.flatnonzero(ours.reshape(-1) != ref.reshape(-1))
    assert bad.size == 0, (
        what,
        bad.size,
        bad[:8],
        ours.reshape(-1)[bad[:8]],
        ref.reshape(-1)[bad[:8]],
    )


@st.composite
def weight_rows(draw: st.DrawFn, qtype: Q, special: bool) -> np.ndarray:
    """Rows of a whole number of blocks of ``qtype`` with groups of every kind."""
    block = GGML_QUANT_SIZES[qtype][0]
    n_rows = draw(st.integers(1, 5))
    n_per_row = block * draw(st.integers(1, 4 if block > 32 else 16))
    kinds = KINDS if special and draw(st.booleans()) else FINITE_KINDS
    chosen = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=4, unique=True))
    return rows(draw(st.integers(0, 2**32 - 1)), n_rows, n_per_row, tuple(chosen))


# -- bit-exact against ggml ----------------------------------------------------------------


@needs_ggml
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_float32_equals_ggml(qtype: Q, data: st.DataObject) -> None:
    x = data.draw(weight_rows(qtype, special=nonfinite_exact(qtype, imatrix=False)))
    assert_same_bytes(quantlens.quantize(x, qtype), ggml_quantize(x, qtype), qtype.name)


@needs_ggml
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_importance_matrix_equals_ggml(qtype: Q, data: st.DataObject) -> None:
    x = data.draw(weight_rows(qtype, special=nonfinite_exact(qtype, imatrix=True)))
    w = importance(data.draw(st.integers(0, 2**32 - 1)), x.shape[-1], data.draw(st.booleans()))
    ours = quantlens.quantize(x, qtype, imatrix=w)
    assert_same_bytes(ours, ggml_quantize(x, qtype, w), qtype.name)


@needs_ggml
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_float16_and_bfloat16_inputs_equal_ggml_on_their_values(
    qtype: Q, data: st.DataObject
) -> None:
    x = data.draw(weight_rows(qtype, special=nonfinite_exact(qtype, imatrix=False)))
    halves = x.astype(np.float16)
    assert_same_bytes(
        quantlens.quantize(halves, qtype), ggml_quantize(halves.astype(np.float32), qtype), "f16"
    )
    brain = torch.from_numpy(x).to(torch.bfloat16)
    assert_same_bytes(
        quantlens.quantize(brain, qtype), ggml_quantize(brain.float().numpy(), qtype), "bf16"
    )
    assert_same_bytes(
        quantlens.quantize(torch.from_numpy(halves), qtype), quantlens.quantize(halves, qtype), "t"
    )


@needs_ggml
@pytest.mark.parametrize(
    "qtype", [t for t in TYPES if nonfinite_exact(t, False)], ids=lambda t: t.name
)
def test_non_finite_weights_give_ggml_bytes(qtype: Q) -> None:
    """The policy: NaN and ±inf anywhere (alone, among normals, filling a block) give the
    bytes ggml writes."""
    block = GGML_QUANT_SIZES[qtype][0]
    n = max(block, 256)
    x = np.random.default_rng(1).standard_normal((6, n)).astype(np.float32)
    x[0, 3] = np.nan
    x[1, 7] = np.inf
    x[2, 11] = -np.inf
    x[3, :] = np.nan
    x[4, :] = np.inf
    x[5, ::2] = -np.inf
    assert_same_bytes(quantlens.quantize(x, qtype), ggml_quantize(x, qtype), qtype.name)
    if nonfinite_exact(qtype, imatrix=True):
        w = np.ones(n, np.float32)
        w[5] = np.nan
        ours = quantlens.quantize(x, qtype, imatrix=w)
        assert_same_bytes(ours, ggml_quantize(x, qtype, w), f"{qtype.name} imatrix")


@needs_ggml
def test_non_finite_inputs_spoil_only_their_own_blocks() -> None:
    """Where NaN/inf inputs do not give ggml's exact bytes (the k-quants and the
    importance-weighted legacy paths; the bytes ggml writes there depend on how the compiler
    orders NaN operands), only the blocks holding them may differ. Every other block equals
    ggml's bytes; for the importance-weighted legacy types, which weight a row by its own
    statistics, every row without NaN or infinity does."""
    checked = 0
    for seed in range(40):
        x = rows(seed, 2, 512, KINDS)
        for qtype in TYPES:
            block, size = GGML_QUANT_SIZES[qtype]
            for imatrix in (None, importance(seed, 512, zeros=False)):
                if nonfinite_exact(qtype, imatrix is not None):
                    continue
                ours = quantlens.quantize(x, qtype, imatrix=imatrix)
                theirs = ggml_quantize(x, qtype, imatrix)
                clean = np.isfinite(np.asarray(x, np.float32).reshape(len(x), -1, block)).all(-1)
                if qtype in LEGACY and imatrix is not None:
                    clean = np.broadcast_to(clean.all(axis=1, keepdims=True), clean.shape)
                ours_blocks = ours.reshape(len(x), -1, size)[clean]
                assert np.array_equal(ours_blocks, theirs.reshape(len(x), -1, size)[clean]), (
                    seed,
                    qtype.name,
                    imatrix is not None,
                )
                checked += int(clean.sum())
    assert checked > 0


@pytest.mark.skipif(not GOLDEN.exists(), reason=f"{GOLDEN} is missing")
def test_recorded_ggml_outputs() -> None:
    """ggml's bytes recorded by scripts/make_quantize_golden.py: the reference where
    llama-cpp-python cannot be installed."""
    golden = np.load(GOLDEN)
    checked = 0
    for key in golden.files:
        kind, _, rest = key.partition("/")
        if kind not in ("q", "qi"):
            continue
        name, case = rest.split("/")
        qtype = Q[name]
        if case == "nonfinite" and not nonfinite_exact(qtype, kind == "qi"):
            continue
        x = golden[f"x/{case}"]
        w = golden[f"imatrix/{case}"] if kind == "qi" else None
        ours = quantlens.quantize(x, qtype, imatrix=w).reshape(-1)
        assert_same_bytes(ours, golden[key], key)
        checked += 1
    assert checked >= len(TYPES) * 2 * 6


# -- round trips and gguf-py compatibility -------------------------------------------------


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_round_trip_through_gguf_py_equals_quantlens(qtype: Q, data: st.DataObject) -> None:
    x = data.draw(weight_rows(qtype, special=False))
    q = quantlens.quantize(x, qtype)
    theirs = np.asarray(gq.dequantize(q, gguf.GGMLQuantizationType(int(qtype))), np.float32)
    ours = quantlens.dequantize(q, qtype)
    assert ours.shape == x.shape
    np.testing.assert_array_equal(ours.view(np.uint32), theirs.view(np.uint32))


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_quants_quantize_has_gguf_py_shapes(qtype: Q) -> None:
    x = rows(3, 6, 512, FINITE_KINDS).reshape(2, 3, 512)
    ours = quantlens.quants.quantize(x, qtype)
    expected_shape = gq.quant_shape_to_byte_shape(x.shape, gguf.GGMLQuantizationType(int(qtype)))
    assert ours.shape == expected_shape and ours.dtype == np.uint8
    assert_same_bytes(ours, quantlens.quantize(x.reshape(6, 512), qtype).reshape(ours.shape), "")


def test_quants_quantize_float_types_match_gguf_py() -> None:
    x = rows(4, 3, 64, FINITE_KINDS).astype(np.float64)
    x[0, :4] = [np.nan, -np.nan, 3.0e38, 1.0e-39]
    for qtype in (Q.F32, Q.F16, Q.BF16):
        ref = gq.quantize(x, gguf.GGMLQuantizationType(int(qtype)))
        ours = quantlens.quants.quantize(x, qtype)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape, qtype
        np.testing.assert_array_equal(ours.view(np.uint8), ref.view(np.uint8))


def test_quants_quantize_refuses_what_it_cannot_make_like_gguf_py() -> None:
    with pytest.raises(NotImplementedError, match="IQ2_XXS"):
        quantlens.quants.quantize(np.zeros((1, 256), np.float32), Q.IQ2_XXS)


# -- inputs, threads, the GIL --------------------------------------------------------------


def test_names_ids_and_enum_members_pick_the_type() -> None:
    x = rows(8, 2, 256, FINITE_KINDS)
    expected = quantlens.quantize(x, Q.Q5_1)
    for spelling in ("Q5_1", "q5_1", 7, gguf.GGMLQuantizationType.Q5_1):
        assert_same_bytes(quantlens.quantize(x, spelling), expected, spelling)


def test_leading_dimensions_are_rows_and_views_are_accepted() -> None:
    x = rows(9, 12, 256, FINITE_KINDS)
    flat = quantlens.quantize(x, Q.IQ4_XS)
    cube = quantlens.quantize(x.reshape(3, 4, 256), Q.IQ4_XS)
    assert cube.shape == (3, 4, 136)
    assert_same_bytes(cube.reshape(12, 136), flat, "3-d")
    strided = np.asfortranarray(x)
    assert_same_bytes(quantlens.quantize(strided, Q.IQ4_XS), flat, "fortran order")
    assert_same_bytes(quantlens.quantize(x[::2], Q.IQ4_XS), flat[::2], "every other row")
    one = quantlens.quantize(x[0], Q.IQ4_XS)
    assert one.shape == (136,)


def test_empty_and_single_block_inputs() -> None:
    assert quantlens.quantize(np.zeros((0, 64), np.float32), Q.Q8_0).shape == (0, 68)
    assert quantlens.quantize(np.ones(32, np.float32), Q.Q4_0).shape == (18,)


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_threads_give_the_same_bytes(qtype: Q) -> None:
    x = rows(10, 61, 4096, FINITE_KINDS)  # odd row count, several tasks
    one = quantlens.quantize(x, qtype, threads=1)
    assert_same_bytes(quantlens.quantize(x, qtype, threads=2), one, "2 threads")
    assert_same_bytes(quantlens.quantize(x, qtype, threads=7), one, "7 threads")
    w = importance(3, 4096, zeros=True)
    one = quantlens.quantize(x, qtype, imatrix=w, threads=1)
    assert_same_bytes(quantlens.quantize(x, qtype, imatrix=w, threads=2), one, "imatrix")


def test_the_gil_is_released_while_quantizing() -> None:
    """While one thread is inside a long quantization, the main thread keeps running."""
    x = rows(11, 64, 8192, ("normal",))
    window: list[float] = []
    done = threading.Event()

    def work() -> None:
        window.append(time.perf_counter())
        quantlens.quantize(x, Q.IQ4_NL, threads=1)
        window.append(time.perf_counter())
        done.set()

    steps: list[float] = []
    worker = threading.Thread(target=work)
    worker.start()
    while not done.is_set():
        steps.append(time.perf_counter())
    worker.join()
    start, end = window
    margin = 0.1 * (end - start)
    inside = [t for t in steps if start + margin < t < end - margin]
    assert end - start > 0.002, "quantization too short to tell"
    assert len(inside) >= 50, (len(inside), end - start)


# -- errors --------------------------------------------------------------------------------


def test_types_without_a_quantizer_raise_unsupported_type() -> None:
    assert not quantlens.can_quantize(Q.IQ2_XXS)
    assert not quantlens.can_quantize("Q8_1")
    with pytest.raises(quantlens.UnsupportedTypeError, match="IQ2_XXS"):
        quantlens.quantize(np.zeros((1, 256), np.float32), Q.IQ2_XXS)
    with pytest.raises(ValueError, match="unknown ggml type"):
        quantlens.quantize(np.zeros((1, 256), np.float32), "Q9_9")


def test_bad_shapes_and_arguments_raise_value_error() -> None:
    x = np.zeros((2, 256), np.float32)
    with pytest.raises(ValueError, match="whole number of Q4_0 blocks"):
        quantlens.quantize(np.zeros((2, 48), np.float32), Q.Q4_0)
    with pytest.raises(ValueError, match="whole number of IQ4_XS blocks"):
        quantlens.quantize(np.zeros((2, 32), np.float32), Q.IQ4_XS)
    with pytest.raises(ValueError, match="at least one dimension"):
        quantlens.quantize(np.float32(1.0), Q.Q8_0)
    with pytest.raises(ValueError, match="threads"):
        quantlens.quantize(x, Q.Q8_0, threads=0)
    with pytest.raises(ValueError, match="importance matrix has 255"):
        quantlens.quantize(x, Q.IQ4_XS, imatrix=np.ones(255, np.float32))
    with pytest.raises(TypeError, match="float weights"):
        quantlens.quantize(np.zeros((1, 32), np.complex64), Q.Q8_0)


def test_q8_0_ignores_an_importance_matrix_as_ggml_does() -> None:
    assert not accepts_imatrix(Q.Q8_0)
    assert all(accepts_imatrix(t) for t in TYPES if t != Q.Q8_0)
    x = rows(12, 3, 256, FINITE_KINDS)
    w = importance(12, 256, zeros=True)
    assert_same_bytes(quantlens.quantize(x, Q.Q8_0, imatrix=w), quantlens.quantize(x, Q.Q8_0), "")
