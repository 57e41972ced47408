"""Encoding detection: the core's ranking against a plain-Python oracle, and file headers
against gguf-py, safetensors and torch as references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlens import _core
from quantlens.config_enums import SupportedEncoding
from quantlens.encoding import file_encodings, rank_encodings, rank_totals

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"

# Every type name the ranking may see: the encodings plus types that are not encodings.
ENCODING_NAMES = _core.encoding_order()
OTHER_NAMES = ["BOOL", "U8", "U16", "U32", "U64", "C64", "F8_E5M2", "Q8_1", "NOPE"]
INTEGERS = {"I8", "I16", "I32", "I64"}


def _corpus(relative: str) -> Path:
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"{path} is not available (the shared corpus is absent)")
    return path


def _encoding_of_core_name(name: str) -> SupportedEncoding:
    from quantlens.ggml_types import GGMLQuantizationType

    plain = SupportedEncoding.from_dtype_name(name)
    return plain or SupportedEncoding.from_ggml_type(GGMLQuantizationType[name])


def test_core_order_is_the_declaration_order_of_supported_encoding() -> None:
    mapped = [_encoding_of_core_name(name) for name in ENCODING_NAMES]
    assert mapped == list(SupportedEncoding)


def oracle(
    tensors: list[tuple[str, int, int]], weighting: str, stated: SupportedEncoding | None
) -> list[tuple[SupportedEncoding, int, int]]:
    """The ranking rule, written out plainly."""
    # GGUF's plain type names are the safetensors names (F32, F16, BF16, F64, I8...).
    totals: dict[str, list[int]] = {}
    for name, elements, nbytes in tensors:
        if name not in ENCODING_NAMES:
            continue
        entry = totals.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += elements if weighting == "elements" else nbytes
    if any(name not in INTEGERS for name in totals):
        totals = {k: v for k, v in totals.items() if k not in INTEGERS}
    order = list(SupportedEncoding)
    ranked = sorted(
        ((_encoding_of_core_name(k), v[0], v[1]) for k, v in totals.items()),
        key=lambda item: (item[0] is not stated, -item[2], order.index(item[0])),
    )
    return ranked


# llama.cpp file types whose label is not the name of their main tensor type.
MIXES = {
    "IQ3_XS": SupportedEncoding.iq3_s,
    "IQ3_M": SupportedEncoding.iq3_s,
    "IQ2_M": SupportedEncoding.iq2_s,
    "MXFP4_MOE": SupportedEncoding.mxfp4,
}


def stated_encoding(file_type: int | None) -> SupportedEncoding | None:
    label = None if file_type is None else _core.file_type_label(file_type)
    if label is None:
        return None
    return MIXES.get(label) or SupportedEncoding.parse_from_file_name(label)


def test_every_labelled_file_type_states_an_encoding() -> None:
    for file_type in range(64):
        label = _core.file_type_label(file_type)
        assert (label is None) == (stated_encoding(file_type) is None), label


tensor_lists = st.lists(
    st.tuples(
        st.sampled_from(ENCODING_NAMES + OTHER_NAMES),
        st.integers(0, 10**12),
        st.integers(0, 10**12),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(tensor_lists, st.sampled_from(["bytes", "elements"]), st.none() | st.integers(0, 41))
def test_ranking_matches_the_oracle(
    tensors: list[tuple[str, int, int]], weighting: str, file_type: int | None
) -> None:
    got = [(s.encoding, s.tensors, s.weight) for s in rank_encodings(tensors, weighting, file_type)]  # type: ignore[arg-type]
    assert got == oracle(tensors, weighting, stated_encoding(file_type))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(SupportedEncoding)), st.integers(0, 10**9))))
def test_totals_sum_per_encoding_and_break_ties_by_declaration(
    totals: list[tuple[SupportedEncoding, int]],
) -> None:
    ranked = rank_totals(totals)
    sums: dict[SupportedEncoding, int] = {}
    for encoding, weight in totals:
        sums[encoding] = sums.get(encoding, 0) + weight
    assert set(ranked) <= set(sums)
    order = list(SupportedEncoding)
    keys = [(-sums[e], order.index(e)) for e in ranked]
    assert keys == sorted(keys)


def test_unknown_weighting_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="weighting"):
        _core.rank_encodings([("F32", 1, 4)], "params")


def _gguf_reference(path: Path) -> list[SupportedEncoding]:
    """Encodings of a GGUF file by bytes, ``general.file_type`` first, using gguf-py."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    tensors = [(t.tensor_type.name, int(t.n_elements), int(t.n_bytes)) for t in reader.tensors]
    field = reader.fields.get("general.file_type")
    stated = None if field is None else stated_encoding(int(field.parts[field.data[0]][0]))
    return [e for e, _, _ in oracle(tensors, "bytes", stated)]


@pytest.mark.parametrize(
    "relative",
    [
        "gguf/generated/resemblyzer-mixed-q4_k.gguf",
        "gguf/generated/resemblyzer-mixed-q4_k.be.gguf",
        "gguf/generated/resemblyzer-typezoo.gguf",
        "gguf/github/ollama-llama-2-tiny-random.gguf",
    ],
)
def test_gguf_encodings_match_gguf_py(relative: str) -> None:
    path = _corpus(relative)
    assert file_encodings(path).encodings == _gguf_reference(path)


def test_split_gguf_counts_every_shard() -> None:
    first = _corpus("gguf/generated/facenet-onet-f16-00001-of-00002.gguf")
    second = first.with_name("facenet-onet-f16-00002-of-00002.gguf")
    from gguf import GGUFReader

    total_f16 = sum(
        int(t.n_bytes)
        for shard in (first, second)
        for t in GGUFReader(shard).tensors
        if t.tensor_type.name == "F16"
    )
    encodings = file_encodings(second)
    assert encodings.primary is SupportedEncoding.float16
    assert encodings.shares[0].weight == total_f16


@pytest.mark.parametrize(
    "relative",
    [
        "safetensors/generated/facenet-onet.f16.safetensors",
        "safetensors/generated/facenet-rnet.f32.safetensors",
        "safetensors/generated/resemblyzer-model_state.bf16.safetensors",
        "safetensors/github/safetensors-samples/overall.safetensors",
        "safetensors/github/candle-encodec-jfk-codes.safetensors",
    ],
)
def test_safetensors_encodings_match_the_header(relative: str) -> None:
    path = _corpus(relative)
    # The reference: the JSON header read directly, parameters per dtype.
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    tensors = [
        (entry["dtype"], int(np.prod(entry["shape"], dtype=np.int64)), 0)
        for name, entry in header.items()
        if name != "__metadata__"
    ]
    expected = [e for e, _, _ in oracle(tensors, "elements", None)]
    assert file_encodings(path).encodings == expected
    assert expected, "every chosen file holds at least one encoding"


@pytest.mark.parametrize(
    "relative",
    [
        "pytorch/generated/facenet-onet.state_dict.pt",
        "pytorch/generated/hf-gpt2-tiny-f32-bin/pytorch_model.bin",
        "pytorch/pypi/lpips-v0.1-alex.pth",
    ],
)
def test_pytorch_encodings_match_torch_load(relative: str) -> None:
    torch = pytest.importorskip("torch")
    path = _corpus(relative)
    state = torch.load(path, map_location="cpu", weights_only=True)
    names = {
        torch.float32: "F32",
        torch.bfloat16: "BF16",
        torch.float16: "F16",
        torch.int64: "I64",
        torch.float64: "F64",
    }
    tensors = [(names[t.dtype], t.numel(), 0) for t in state.values() if torch.is_tensor(t)]
    expected = [e for e, _, _ in oracle(tensors, "elements", None)]
    assert file_encodings(path).encodings == expected


def test_mislabelled_gguf_reports_its_tensors(tmp_path: Path) -> None:
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    path = tmp_path / "model-q4_0.gguf"
    writer = GGUFWriter(path, "llama")
    writer.add_file_type(2)  # MOSTLY_Q4_0: a label the tensors contradict
    values = np.linspace(-1, 1, 8 * 256, dtype=np.float32).reshape(8, 256)
    writer.add_tensor(
        "w", quantize(values, GGMLQuantizationType.Q4_1), raw_dtype=GGMLQuantizationType.Q4_1
    )
    writer.add_tensor("norm", np.ones(256, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    encodings = file_encodings(path)
    assert encodings.stated is SupportedEncoding.q4_0
    assert encodings.encodings == [SupportedEncoding.q4_1, SupportedEncoding.float32]


def test_vocab_only_gguf_has_no_encoding() -> None:
    encodings = file_encodings(_corpus("gguf/vocab/ggml-vocab-gpt-2.gguf"))
    assert encodings.primary is None and encodings.parameters == 0
