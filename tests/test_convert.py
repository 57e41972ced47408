"""``quantlens convert`` on real files (the shared corpus) and on a generated llama model:
every tensor checked against its source, the output read by gguf-py and safetensors,
the llama-quantize mixes, splits, and --dry-run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

import quantlens
from quantlens.cli import main
from quantlens.convert import convert_to_gguf, convert_to_safetensors, parse_size, plan_gguf
from quantlens.quant_mix import FILE_TYPES, choose_types, ggml_n_dims

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
SOURCES = [
    "safetensors/generated/facenet-onet.f16.safetensors",
    "safetensors/generated/facenet-rnet.f32.safetensors",
    "safetensors/generated/resemblyzer-model_state.bf16.safetensors",
    "safetensors/generated/hf-gpt2-tiny-bf16",
    "safetensors/generated/hf-gpt2-tiny-bf16/model.safetensors.index.json",
    "pytorch/generated/hf-gpt2-tiny-f32-bin/pytorch_model.bin",
    "pytorch/generated/facenet-onet.state_dict.pt",
]
GGUF_SOURCES = [
    "gguf/generated/resemblyzer-mixed-q4_k.gguf",
    "gguf/generated/facenet-onet-f16-00001-of-00002.gguf",
    "gguf/github/ollama-llama-2-tiny-random.gguf",
]


def corpus_file(rel: str) -> Path:
    path = CORPUS / rel
    if not path.exists():
        pytest.skip(f"corpus file {path} is missing (the corpus lives at ../shared/corpus)")
    return path


def _source_tensors(src: Path) -> dict[str, np.ndarray]:
    with quantlens.open_weights(src) as f:
        return {name: f.get_tensor(name) for name in f}


def _expected_float(source: np.ndarray, type_name: str) -> bytes:
    """The bytes a float source becomes, computed with torch (an independent rounding)."""
    import torch

    as_f32 = torch.from_numpy(np.ascontiguousarray(source.astype(np.float32)))
    if type_name == "F32":
        return as_f32.numpy().tobytes()
    if type_name == "F16":
        return as_f32.to(torch.float16).numpy().tobytes()
    assert type_name == "BF16"
    return as_f32.to(torch.bfloat16).view(torch.int16).numpy().tobytes()


@pytest.mark.parametrize("rel", SOURCES)
@pytest.mark.parametrize("type_label", ["F32", "F16", "BF16"])
def test_corpus_to_float_gguf_matches_source(tmp_path: Path, rel: str, type_label: str) -> None:
    src = corpus_file(rel)
    dst = tmp_path / "out.gguf"
    assert convert_to_gguf(src, dst, type_label) == [dst]
    sources = _source_tensors(src)
    reader = gguf.GGUFReader(dst)
    assert (
        reader.fields["general.file_type"].contents()
        == {"F32": 0, "F16": 1, "BF16": 32}[type_label]
    )
    assert sorted(t.name for t in reader.tensors) == sorted(sources)
    for t in reader.tensors:
        source = sources[t.name]
        shape = tuple(int(d) for d in reversed(t.shape))
        assert shape == (source.shape or (1,))
        if source.dtype.kind in "iu":
            assert (
                t.data.astype(np.int64).tobytes() == source.astype(np.int64).reshape(-1).tobytes()
            )
            continue
        expected_type = "F32" if ggml_n_dims(shape) == 1 else type_label
        assert t.tensor_type.name == expected_type, t.name
        assert t.data.tobytes() == _expected_float(source, expected_type), t.name


LLAMA_CONFIG: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 320,
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}


def _write_tiny_llama(folder: Path, **overrides: Any) -> None:
    """A random llama checkpoint: by transformers' ``save_pretrained`` when installed,
    else the same tensor names and config written with the safetensors package."""
    c = LLAMA_CONFIG | overrides
    try:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        print(f"transformers unavailable ({e}); writing the llama checkpoint directly")
    else:
        settings = {
            k: v for k, v in LLAMA_CONFIG.items() if k not in ("model_type", "architectures")
        }
        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(**settings)).save_pretrained(folder)
        return
    from safetensors.numpy import save_file

    hidden, inter, kv = c["hidden_size"], c["intermediate_size"], c["num_key_value_heads"]
    kv_rows = kv * hidden // c["num_attention_heads"]
    shapes = {
        "model.embed_tokens.weight": (c["vocab_size"], hidden),
        "model.norm.weight": (hidden,),
    }
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (c["vocab_size"], hidden)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (kv_rows, hidden),
            p + "self_attn.v_proj.weight": (kv_rows, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (inter, hidden),
            p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
        }
    rng = np.random.default_rng(0)
    save_file(
        {k: (rng.standard_normal(s) * 0.02).astype(np.float32) for k, s in shapes.items()},
        str(folder / "model.safetensors"),
    )
    (folder / "config.json").write_text(json.dumps(c))


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    _write_tiny_llama(folder)
    return folder


@pytest.fixture(scope="module")
def odd_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rows of 160 weights (not whole k-quant blocks: fallbacks) and tied embeddings."""
    folder = tmp_path_factory.mktemp("odd-llama")
    _write_tiny_llama(
        folder,
        hidden_size=160,
        intermediate_size=320,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        tie_word_embeddings=True,
    )
    return folder


def test_llama_names_keys_and_qk_permutation(tiny_llama: Path, tmp_path: Path) -> None:
    dst = tmp_path / "llama.gguf"
    convert_to_gguf(tiny_llama, dst, "F32")
    config = json.loads((tiny_llama / "config.json").read_text())
    reader = gguf.GGUFReader(dst)
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert fields["general.architecture"] == "llama"
    assert fields["llama.block_count"] == 8
    assert fields["llama.embedding_length"] == 256
    assert fields["llama.attention.head_count"] == 8
    assert fields["llama.attention.head_count_kv"] == 2
    assert fields["llama.feed_forward_length"] == 512
    assert fields["llama.context_length"] == 256
    assert fields["llama.rope.dimension_count"] == 32
    assert fields["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    tensors = {t.name: t for t in reader.tensors}
    assert {"token_embd.weight", "output.weight", "output_norm.weight"} <= set(tensors)
    sources = _source_tensors(tiny_llama)
    np.testing.assert_array_equal(
        tensors["blk.3.ffn_down.weight"].data, sources["model.layers.3.mlp.down_proj.weight"]
    )
    # GGUF llama rotates pairs (2i, 2i+1) of each head; HF rotates (i, i + d/2).
    head_dim = 32
    for hf, gg, heads in [("q_proj", "attn_q", 8), ("k_proj", "attn_k", 2)]:
        src = sources[f"model.layers.5.self_attn.{hf}.weight"]
        out = np.asarray(tensors[f"blk.5.{gg}.weight"].data)
        assert out.shape == src.shape
        for h in range(config["num_key_value_heads"] if hf == "k_proj" else heads):
            for i in range(head_dim // 2):
                np.testing.assert_array_equal(out[h * head_dim + 2 * i], src[h * head_dim + i])
                np.testing.assert_array_equal(
                    out[h * head_dim + 2 * i + 1], src[h * head_dim + head_dim // 2 + i]
                )


def test_mixes_pick_llama_quantize_types(tiny_llama: Path, tmp_path: Path) -> None:
    def types(label: str) -> dict[str, str]:
        plan = plan_gguf(tiny_llama, tmp_path / "x.gguf", label)
        return {t.name: t.ggml_type.name for t in plan.tensors}

    more_bits = {0, 3, 6, 7}  # use_more_bits(i, 8)
    m = types("Q4_K_M")
    assert m["output.weight"] == "Q6_K"
    assert m["token_embd.weight"] == "Q4_K"
    assert m["output_norm.weight"] == "F32"
    for i in range(8):
        expected = "Q6_K" if i in more_bits else "Q4_K"
        assert m[f"blk.{i}.attn_v.weight"] == expected
        assert m[f"blk.{i}.ffn_down.weight"] == expected
        assert m[f"blk.{i}.attn_q.weight"] == "Q4_K"
        assert m[f"blk.{i}.ffn_up.weight"] == "Q4_K"
        assert m[f"blk.{i}.attn_norm.weight"] == "F32"
    assert types("Q4_K") == m
    s = types("Q4_K_S")
    assert [s[f"blk.{i}.attn_v.weight"] for i in range(8)] == ["Q5_K"] * 4 + ["Q4_K"] * 4
    assert [s[f"blk.{i}.ffn_down.weight"] for i in range(8)] == ["Q5_K"] + ["Q4_K"] * 7
    assert types("Q8_0")["output.weight"] == "Q8_0"
    q4 = types("Q4_0")
    assert q4["output.weight"] == "Q6_K" and q4["blk.0.attn_v.weight"] == "Q4_0"
    q3 = types("Q3_K_M")
    assert [q3[f"blk.{i}.attn_v.weight"] for i in range(8)] == ["Q5_K"] * 2 + ["Q4_K"] * 6
    assert q3["blk.0.attn_output.weight"] == "Q4_K" and q3["blk.0.ffn_down.weight"] == "Q4_K"
    pure = plan_gguf(tiny_llama, tmp_path / "x.gguf", "Q4_K_M", pure=True)
    assert {t.ggml_type.name for t in pure.tensors} == {"Q4_K", "F32"}


def test_mix_fallbacks_for_rows_that_are_not_whole_blocks() -> None:
    tensors = [
        ("blk.0.attn_v.weight", (64, 96)),
        ("output.weight", (10, 96)),
        ("a.weight", (4, 40)),
    ]
    # attn_v of the first layers gets Q5_K under Q4_K_S, which falls back to Q5_1.
    assert [t.name for t in choose_types(tensors, "Q4_K_S")] == ["Q5_1", "Q8_0", "F16"]
    assert [t.name for t in choose_types(tensors, "Q4_K_S", pure=True)] == ["Q5_0", "Q5_0", "F16"]
    assert [t.name for t in choose_types(tensors, "Q6_K")] == ["Q8_0", "Q8_0", "F16"]
    assert [t.name for t in choose_types([("t.weight", (1, 64))], "Q8_0")] == ["F32"]


QUANT_LABELS = ["Q8_0", "Q4_0", "Q5_1", "IQ4_NL", "Q4_K_M", "Q6_K", "IQ4_XS", "Q2_K", "Q3_K_L"]


@pytest.mark.parametrize("pure", [False, True], ids=["mix", "pure"])
@pytest.mark.parametrize("label", QUANT_LABELS)
def test_quantized_conversion_equals_quantize_of_source(
    tiny_llama: Path, tmp_path: Path, label: str, pure: bool
) -> None:
    plan = plan_gguf(tiny_llama, tmp_path / "q.gguf", label, pure=pure)
    missing = {t.ggml_type.name for t in plan.tensors} - {"F32", "F16"}
    missing = {m for m in missing if not quantlens.can_quantize(m)}
    if missing:
        pytest.skip(f"this build cannot quantize {sorted(missing)} yet")
    dst = tmp_path / "q.gguf"
    convert_to_gguf(tiny_llama, dst, label, threads=2, pure=pure)
    from quantlens.convert import permute_qk

    sources = _source_tensors(tiny_llama)
    reader = gguf.GGUFReader(dst)
    by_name = {t.name: t for t in reader.tensors}
    with quantlens.open_weights(dst) as ours:
        for t in plan.tensors:
            source = sources[t.source]
            if t.permute_heads is not None:
                source = permute_qk(source, t.permute_heads)
            written = by_name[t.name]
            assert written.tensor_type.name == t.ggml_type.name
            if t.ggml_type.name in ("F32", "F16"):
                assert written.data.tobytes() == _expected_float(source, t.ggml_type.name)
                continue
            expected = quantlens.quantize(source.astype(np.float32), t.ggml_type)
            assert written.data.tobytes() == expected.tobytes(), t.name
            try:
                reference = gguf.quants.dequantize(written.data, written.tensor_type)
            except NotImplementedError:
                continue
            np.testing.assert_array_equal(ours.get_tensor(t.name), reference.reshape(t.shape))


def test_split_conversion_opens_as_one_model(tiny_llama: Path, tmp_path: Path) -> None:
    dst = tmp_path / "split.gguf"
    assert main(["convert", str(tiny_llama), str(dst), "--type", "F16",
                 "--split-max-size", "2M", "--no-progress"]) == 0  # fmt: skip
    paths = sorted(tmp_path.iterdir())
    assert len(paths) >= 3 and paths[0].name == f"split-00001-of-{len(paths):05d}.gguf"
    with (
        quantlens.open_weights(paths[0]) as model,
        quantlens.open_weights(paths[-1]) as same,
    ):
        assert model.keys() == same.keys()
        assert len(model.keys()) == 75
        assert model.metadata["llama.block_count"] == 8
    for p in paths:
        assert p.stat().st_size <= 2_000_000 + 64 * 1024


def test_dry_run_writes_nothing(
    tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert (
        main(["convert", str(tiny_llama), str(out / "m.gguf"), "--type", "Q4_K_M", "--dry-run"])
        == 0
    )
    printed = capsys.readouterr().out
    assert list(out.iterdir()) == []
    assert "blk.0.attn_v.weight" in printed and "Q6_K" in printed
    plan = plan_gguf(tiny_llama, out / "m.gguf", "Q4_K_M")
    assert f"output {sum(plan.output_sizes):,} bytes" in printed
    gguf_src = corpus_file(GGUF_SOURCES[0])
    assert main(["convert", str(gguf_src), str(out / "m.safetensors"), "--dry-run"]) == 0
    assert list(out.iterdir()) == []


def test_non_llama_config_keeps_names(tmp_path: Path) -> None:
    src = corpus_file("safetensors/generated/hf-gpt2-tiny-bf16")
    plan = plan_gguf(src, tmp_path / "g.gguf", "Q8_0")
    assert all(t.name == t.source for t in plan.tensors)
    assert any("names kept" in n for n in plan.notes)
    assert plan.arch is None


@pytest.mark.parametrize("rel", GGUF_SOURCES)
@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
def test_gguf_to_safetensors_equals_dequantization(tmp_path: Path, rel: str, dtype: str) -> None:
    from safetensors import safe_open

    src = corpus_file(rel)
    dst = tmp_path / "out.safetensors"
    convert_to_safetensors(src, dst, dtype)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]
    element = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype]
    import torch

    readers = {t.name: t for p in _shards(src) for t in gguf.GGUFReader(p).tensors}
    with quantlens.open_weights(src) as model, safe_open(str(dst), "pt") as st:
        assert sorted(st.keys()) == sorted(model.keys())
        for name in model:
            got = st.get_tensor(name)
            info = model.tensor(name)
            if info.type_name.startswith("I"):
                np.testing.assert_array_equal(got.numpy(), model.get_slice(name)[...])
                continue
            expected = model.get_tensor(name, getattr(torch, element))
            assert got.dtype == expected.dtype and tuple(got.shape) == tuple(info.shape)
            assert torch.equal(got.view(torch.uint8), expected.view(torch.uint8)), name
            if dtype == "f32":
                reader_tensor = readers[name]
                try:
                    reference = gguf.quants.dequantize(
                        reader_tensor.data, reader_tensor.tensor_type
                    )
                except NotImplementedError:
                    continue
                np.testing.assert_array_equal(got.numpy().reshape(-1), reference.reshape(-1))


def _shards(path: Path) -> list[Path]:
    with quantlens.open_weights(path) as model:
        return list(model.paths)


def test_destination_named_for_the_wrong_format_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = corpus_file(GGUF_SOURCES[0])
    assert main(["convert", str(src), str(tmp_path / "again.gguf")]) == 1
    assert "named for the other format" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_parse_size() -> None:
    assert parse_size("2G") == 2_000_000_000
    assert parse_size("500M") == 500_000_000
    assert parse_size("1234") == 1234
    with pytest.raises(ValueError):
        parse_size("lots")


def test_llama_cpp_runs_the_converted_model_like_transformers(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """llama.cpp (through llama-cpp-python) computes the same logits from the converted file
    as transformers from the original: names, hyperparameters and the Q/K permutation agree
    with what llama.cpp expects, and it loads the model split the way quantlens splits."""
    try:
        import torch
        from llama_cpp import llama_cpp as lib
        from transformers import LlamaForCausalLM
    except ImportError as e:
        pytest.skip(f"llama-cpp-python, torch and transformers are needed: {e}")

    from quantlens.gguf_writer import GGUFWriter

    converted = tmp_path / "f32.gguf"
    convert_to_gguf(tiny_llama, converted, "F32")
    # No tokenizer is written; llama.cpp loads a model from token ids when told there is none.
    runnable = tmp_path / "runnable.gguf"
    with quantlens.open_weights(converted) as f, GGUFWriter(runnable, split_max_tensors=30) as w:
        for key, value in f.metadata.items():
            w.add_metadata(key, value, f.metadata.types[key])
        w.add_metadata("tokenizer.ggml.model", "none")
        for t in f.tensors:
            w.add_tensor_info(t.name, t.shape, t.type_name)
        for t in f.tensors:
            w.write_tensor_data(t.name, f.tensor_bytes(t.name))
    shards = w.close()
    assert len(shards) == 3

    ids = [1, 5, 17, 200, 3, 42, 299, 7]
    lib.llama_backend_init()
    model = lib.llama_model_load_from_file(
        str(shards[0]).encode(), lib.llama_model_default_params()
    )
    assert model, "llama.cpp could not load the converted model"
    params = lib.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_threads = 64, 64, 2
    ctx = lib.llama_init_from_model(model, params)
    batch = lib.llama_batch_init(len(ids), 0, 1)
    try:
        batch.n_tokens = len(ids)
        for i, token in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, 1
        assert lib.llama_decode(ctx, batch) == 0
        n_vocab = 320
        got = np.array(
            [
                np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, i), (n_vocab,))
                for i in range(len(ids))
            ]
        )
    finally:
        lib.llama_batch_free(batch)
        lib.llama_free(ctx)
        lib.llama_model_free(model)
    reference = LlamaForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0].numpy()
    # Measured: about 5e-4 of the largest logit; unpermuted Q/K projections give about 2e-2.
    assert np.abs(got - expected).max() < 3e-3 * np.abs(expected).max()


@pytest.mark.parametrize("model", ["tiny_llama", "odd_llama"])
@pytest.mark.parametrize("label", [ft.label for ft in FILE_TYPES.values() if ft.quantized])
def test_mixes_equal_llama_quantize_byte_for_byte(
    request: pytest.FixtureRequest, tmp_path: Path, model: str, label: str
) -> None:
    """llama.cpp's own llama-quantize (``llama_model_quantize`` in llama-cpp-python's
    libllama) on our F32 conversion gives the same file as converting straight to
    ``label``: every tensor's type and bytes."""
    import ctypes

    try:
        from llama_cpp import llama_cpp as lib
    except ImportError as e:
        pytest.skip(f"llama-cpp-python is not importable: {e}")
    src: Path = request.getfixturevalue(model)
    plan = plan_gguf(src, tmp_path / "ours.gguf", label)
    missing = sorted(
        {t.ggml_type.name for t in plan.tensors if not quantlens.can_quantize(t.ggml_type)}
        - {"F32", "F16"}
    )
    if missing:
        pytest.skip(f"this build cannot quantize {missing} yet")
    convert_to_gguf(src, tmp_path / "f32.gguf", "F32")
    convert_to_gguf(src, tmp_path / "ours.gguf", label)
    lib.llama_backend_init()
    params = lib.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[label].id
    params.nthread = 2
    rc = lib.llama_model_quantize(
        str(tmp_path / "f32.gguf").encode(),
        str(tmp_path / "ref.gguf").encode(),
        ctypes.byref(params),
    )
    assert rc == 0
    reference = {t.name: t for t in gguf.GGUFReader(tmp_path / "ref.gguf").tensors}
    ours = {t.name: t for t in gguf.GGUFReader(tmp_path / "ours.gguf").tensors}
    assert ours.keys() == reference.keys()
    for name, ref in reference.items():
        assert ours[name].tensor_type == ref.tensor_type, name
        assert ours[name].data.tobytes() == ref.data.tobytes(), name
