"""PyTorch checkpoints through ``quantlens.open_weights``, against ``torch.load``.

- Every PyTorch file of the shared corpus and every generated fixture gives the tensors
  ``torch.load(weights_only=True)`` gives: same dotted names, dtypes, shapes, strides and
  bytes, as numpy arrays and as torch tensors.
- Hypothesis writes checkpoints with ``torch.save`` (zip and legacy) of random dtypes,
  shapes, views, shared storages and nesting; each reads back bit for bit.
- Hostile checkpoints are refused with the right exception, and a canary file that their
  payload would create never appears — while a plain ``pickle.load`` of the same payload,
  in a subprocess, does create it (so the payloads are real).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytorch_builders import CANARY, flatten, hostile_cases

import quantlens
from quantlens import exceptions

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
FIXTURES = ROOT / "rust/quantlens-core/tests/data/pytorch"

# Rust error variant → the Python class it becomes.
ERRORS = {
    "UnsafePickle": exceptions.UnsafePickleError,
    "Malformed": exceptions.MalformedFileError,
    "Truncated": exceptions.TruncatedFileError,
    "LimitExceeded": exceptions.LimitExceededError,
    "UnsupportedVersion": exceptions.UnsupportedVersionError,
    "UnsupportedDType": exceptions.UnsupportedTypeError,
}


def raw_bytes(t: Any) -> bytes:
    """A torch tensor's elements in row-major order, as bytes."""
    # A fresh tensor: .contiguous() keeps odd strides on size-1 dimensions.
    dense = torch.empty(t.shape, dtype=t.dtype).copy_(t.detach())
    return dense.reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_same(path: Path, reference: Any) -> None:
    """The checkpoint at ``path`` read by quantlens equals ``reference`` (torch's result)."""
    want, metadata = flatten(reference)
    with quantlens.open_weights(path) as f:
        assert isinstance(f, quantlens.TorchFile)
        assert f.keys() == [name for name, _ in want]
        assert f.metadata == dict(metadata)
        for name, t in want:
            info = f.tensor(name)
            assert info.shape == tuple(t.shape), name
            assert info.strides == t.stride(), name
            array = f.get_tensor(name)
            assert array.shape == tuple(t.shape), name
            assert np.ascontiguousarray(array).view(np.uint8).tobytes() == raw_bytes(t), name
            mine = f.get_tensor(name, dtype=t.dtype)
            assert mine.dtype == t.dtype and mine.stride() == t.stride(), name
            assert raw_bytes(mine) == raw_bytes(t), name


# -- corpus and fixtures ------------------------------------------------------------------


def _corpus_files() -> list[Any]:
    manifest = CORPUS / "MANIFEST.json"
    if not manifest.exists():
        return [pytest.param(None, id="no-corpus")]
    files = json.loads(manifest.read_text())["files"]
    return [f["path"] for f in files if f["format"].startswith("pytorch")]


@pytest.mark.parametrize("rel", _corpus_files())
def test_corpus_checkpoint_matches_torch_load(rel: str | None) -> None:
    if rel is None:
        pytest.skip(f"no corpus at {CORPUS}")
    path = CORPUS / rel
    reference = torch.load(path, weights_only=True, map_location="cpu")
    assert_same(path, reference)


VALID = json.loads((FIXTURES / "expected.json").read_text())["valid"]


@pytest.mark.parametrize("name", sorted(VALID))
def test_generated_fixture_matches_torch_load(name: str) -> None:
    path = FIXTURES / name
    # torch's weights-only reader refuses protocol 4/5 (FRAME); these files are our own.
    trusted = "protocol" in name
    with open(path, "rb") as fh:
        reference = torch.load(fh, weights_only=not trusted)
    assert_same(path, reference)


# -- hypothesis: random checkpoints -------------------------------------------------------

LEGACY_DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.complex64,
]
ZIP_DTYPES = [
    *LEGACY_DTYPES,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
    torch.complex128,
]


@st.composite
def base_tensors(draw: st.DrawFn, dtypes: list[Any]) -> Any:
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=3))
    n = int(np.prod(shape)) if shape else 1
    raw = draw(st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize))
    t = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0)
    t = t.view(dtype) if raw else torch.empty(0, dtype=dtype)
    if dtype == torch.bool:
        t = t.view(torch.uint8).remainder(2).view(torch.bool)
    return t.reshape(shape)


@st.composite
def views(draw: st.DrawFn, base: Any) -> Any:
    """A view of ``base``: itself, transposed, sliced (with step and storage offset),
    an element, or expanded."""
    kind = draw(st.sampled_from(["same", "t", "slice", "select", "expand", "flat"]))
    if kind == "t" and base.dim() >= 2:
        return base.transpose(0, base.dim() - 1)
    if kind == "slice" and base.dim() >= 1 and base.shape[0] > 0:
        start = draw(st.integers(0, base.shape[0] - 1))
        return base[start :: draw(st.integers(1, 3))]
    if kind == "select" and base.dim() >= 1 and base.shape[0] > 0:
        return base[draw(st.integers(0, base.shape[0] - 1))]
    if kind == "expand":
        return base.expand(draw(st.integers(1, 3)), *base.shape)
    if kind == "flat":
        return base.reshape(-1) if base.is_contiguous() else base
    return base


@st.composite
def checkpoints(draw: st.DrawFn, dtypes: list[Any]) -> dict[str, Any]:
    """Nested dicts, OrderedDicts, lists and tuples of tensors, views of shared bases and
    scalars."""
    bases = draw(st.lists(base_tensors(dtypes), min_size=1, max_size=3))
    leaf = st.one_of(
        st.sampled_from(bases).flatmap(views),
        st.integers(-(2**40), 2**40),
        st.booleans(),
        st.text("abcxyz", max_size=4),
    )
    keys = st.text("abcdefgh_", min_size=1, max_size=4)
    tree = st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(keys, children, max_size=3),
            st.dictionaries(keys, children, max_size=3).map(OrderedDict),
        ),
        max_leaves=8,
    )
    return draw(st.dictionaries(keys, tree, min_size=1, max_size=4))


def _round_trip(tmp_path: Path, obj: dict[str, Any], **kwargs: Any) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save(obj, path, **kwargs)
    assert_same(path, torch.load(path, weights_only=True))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(obj=checkpoints(ZIP_DTYPES))
def test_random_zip_checkpoints_match_torch_load(tmp_path: Path, obj: dict[str, Any]) -> None:
    _round_trip(tmp_path, obj)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(obj=checkpoints(LEGACY_DTYPES))
def test_random_legacy_checkpoints_match_torch_load(tmp_path: Path, obj: dict[str, Any]) -> None:
    _round_trip(tmp_path, obj, _use_new_zipfile_serialization=False)


def test_strided_views_of_every_zip_dtype(tmp_path: Path) -> None:
    """Non-contiguous views of each dtype (float8 and complex included) read as torch reads
    them (found by hypothesis: float8 views once failed in the strided numpy copy)."""
    obj = {}
    for dtype in ZIP_DTYPES:
        base = torch.arange(6).reshape(2, 3).to(dtype)
        name = str(dtype).removeprefix("torch.")
        obj[f"{name}_t"] = base.t()
        obj[f"{name}_expanded"] = base[0].expand(2, 3)
    _round_trip(tmp_path, obj)


# -- hostile checkpoints ------------------------------------------------------------------

HOSTILE = hostile_cases()
LIVE = [c for c in HOSTILE if c.live]

# Unpickle with the standard, code-running unpickler; storages resolve to None.
_UNSAFE_LOAD = """
import pickle, sys, time
class Loader(pickle.Unpickler):
    def persistent_load(self, pid):
        return None
try:
    Loader(open(sys.argv[1], "rb")).load()
except Exception:
    pass
for _ in range(50):  # subprocess.Popen creates the canary a moment later
    if __import__("os").path.exists(sys.argv[2]):
        break
    time.sleep(0.05)
"""


@pytest.mark.parametrize("case", LIVE, ids=lambda c: c.name)
def test_live_payload_really_runs_under_pickle(tmp_path: Path, case: Any) -> None:
    """Control: the payload is real — the standard unpickler creates the canary."""
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(case.payload)
    subprocess.run(
        [sys.executable, "-c", _UNSAFE_LOAD, str(payload), CANARY],
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    assert (tmp_path / CANARY).exists()


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.name)
def test_hostile_checkpoint_is_refused_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"{case.name}.pt"
    path.write_bytes(case.data)
    with pytest.raises(ERRORS[case.error]) as info:
        quantlens.open_weights(path)
    assert isinstance(info.value, quantlens.QuantlensError)
    if case.global_name is not None:
        assert case.global_name in str(info.value)
        assert info.value.offset is not None and 0 <= info.value.offset < len(case.data)
    assert not (tmp_path / CANARY).exists()
    assert not list(tmp_path.glob(f"*{CANARY}*"))


REFUSED = json.loads((FIXTURES / "expected.json").read_text())["refused"]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_fixture_raises_its_class(name: str) -> None:
    want = REFUSED[name]
    with pytest.raises(ERRORS[want["error"]]) as info:
        quantlens.open_weights(FIXTURES / name)
    assert info.value.path is not None and os.fspath(info.value.path).endswith(name)
    if want["global"]:
        assert want["global"] in str(info.value)


def test_unsafe_pickle_error_is_exported() -> None:
    assert quantlens.UnsafePickleError is exceptions.UnsafePickleError
    assert issubclass(quantlens.UnsafePickleError, quantlens.QuantlensError)


def test_torch_is_not_needed_to_read(tmp_path: Path) -> None:
    """Reading a checkpoint never imports torch (numpy results only)."""
    path = tmp_path / "small.pt"
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4, dtype=torch.float32)}, buf)
    path.write_bytes(buf.getvalue())
    code = (
        "import sys, quantlens\n"
        f"f = quantlens.open_weights({str(path)!r})\n"
        "assert f.get_tensor('w').tolist() == [0.0, 1.0, 2.0, 3.0]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
