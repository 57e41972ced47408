"""``quantlens.Limits``: the defaults open every real file; each cap, lowered, refuses a
real file with a :class:`~quantlens.LimitExceededError` that names the cap."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import quantlens
from quantlens import LimitExceededError, Limits

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.json"


def corpus_paths() -> list[str]:
    if not MANIFEST.is_file():
        return []
    files = json.loads(MANIFEST.read_text())["files"]
    return [f["path"] for f in files if f["format"] != "safetensors-index-json"]


def corpus_file(rel: str) -> Path:
    path = CORPUS / rel
    if not path.is_file():
        reason = f"corpus file {path} is missing"
        print(reason)
        pytest.skip(reason)
    return path


def test_defaults_are_the_core_caps() -> None:
    limits = Limits()
    assert dataclasses.asdict(limits) == dict(quantlens._core.default_limits())
    assert limits.max_tensors >= 100_000 and limits.max_depth >= 8


@pytest.mark.parametrize("rel", corpus_paths() or ["<no corpus>"])
def test_defaults_open_every_corpus_file(rel: str) -> None:
    import numpy as np

    path = corpus_file(rel)
    with (
        quantlens.open_weights(path, limits=Limits()) as mapped,
        quantlens.open_weights(path, limits=Limits(), mmap=False) as read,
    ):
        assert mapped.keys() == read.keys()
        for name in mapped.keys()[:3]:
            assert np.array_equal(mapped.tensor_bytes(name), read.tensor_bytes(name))


#: (cap, lowered value, a corpus file that claims more than that).
LOWERED = [
    ("max_header_bytes", 1000, "gguf/vocab/ggml-vocab-gpt-2.gguf"),
    ("max_header_bytes", 16, "safetensors/generated/facenet-rnet.f32.safetensors"),
    ("max_header_bytes", 16, "pytorch/generated/facenet-onet.state_dict.pt"),
    (
        "max_header_bytes",
        100,
        "safetensors/generated/hf-gpt2-tiny-bf16/model.safetensors.index.json",
    ),
    ("max_tensors", 1, "gguf/github/ollama-llama-2-tiny-random.gguf"),
    ("max_tensors", 1, "safetensors/generated/facenet-onet.f16.safetensors"),
    ("max_tensors", 1, "pytorch/generated/hf-gpt2-tiny-f32-bin/pytorch_model.bin"),
    ("max_tensors", 1, "pytorch/pypi/lpips-v0.1-alex.pth"),
    ("max_string_len", 4, "gguf/vocab/ggml-vocab-llama-spm.gguf"),
    ("max_array_len", 10, "gguf/vocab/ggml-vocab-bert-bge.gguf"),
    ("max_depth", 0, "gguf/vocab/ggml-vocab-phi-3.gguf"),
    ("max_depth", 0, "pytorch/generated/facenet-onet.state_dict.pt"),
]


@pytest.mark.parametrize(("cap", "value", "rel"), LOWERED, ids=lambda x: str(x))
def test_each_cap_lowered_refuses_a_real_file(cap: str, value: int, rel: str) -> None:
    path = corpus_file(rel)
    limits = dataclasses.replace(Limits(), **{cap: value})
    with pytest.raises(LimitExceededError) as info:
        quantlens.open_weights(path, limits=limits)
    assert info.value.setting == cap
    assert f"Limits.{cap}" in str(info.value)
    assert info.value.path is not None
    # The same file opens again under the defaults: nothing was cached or poisoned.
    with quantlens.open_weights(path) as f:
        assert f.metadata is not None


def test_file_classes_take_limits(small_model: Path) -> None:
    with pytest.raises(LimitExceededError) as info:
        quantlens.GGUFFile(small_model, limits=Limits(max_tensors=2))
    assert info.value.setting == "max_tensors"
    with quantlens.GGUFFile(small_model, limits=Limits(max_tensors=3), mmap=False) as f:
        assert len(f) == 3


def test_fixed_caps_name_no_setting(tmp_path: Path) -> None:
    from gguf_builders import Tensor, build_gguf, write

    data = build_gguf(tensors=[Tensor("t", [1] * 9, 0, 0)], data=bytes(32)).data
    with pytest.raises(LimitExceededError) as info:
        quantlens.open_weights(write(tmp_path / "dims.gguf", data))
    assert info.value.setting is None
    assert "Limits." not in str(info.value)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "10", True])
def test_limits_are_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="max_depth"):
        Limits(max_depth=bad)  # type: ignore[arg-type]
