"""quantlens.integrations.transformers against transformers' own GGUF loader.

Every comparison runs transformers' ``load_gguf_checkpoint`` (gguf-py's reader and numpy
dequantizer) and quantlens' on the same file and model, and asserts the same keys in the
same order, the same dtypes and shapes, and the same bits (NaNs included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantlens import _core
from quantlens.files import GGUFFile
from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

torch = pytest.importorskip("torch", reason="torch is not installed")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")
gguf = pytest.importorskip("gguf", reason="gguf-py is not installed")

from transformers import modeling_gguf_pytorch_utils as hf_gguf  # noqa: E402

from quantlens.integrations import transformers as qt  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
DTYPES = [None, torch.float32, torch.bfloat16, torch.float16]
Q = GGMLQuantizationType

# llama-quantize's Q4_K_M recipe, by tensor role (attn_v and ffn_down alternate Q6_K/Q4_K
# by layer there; here they are Q6_K, like its first layers).
Q4_K_M = {
    "token_embd": Q.Q4_K,
    "attn_q": Q.Q4_K,
    "attn_k": Q.Q4_K,
    "attn_v": Q.Q6_K,
    "attn_output": Q.Q4_K,
    "ffn_gate": Q.Q4_K,
    "ffn_up": Q.Q4_K,
    "ffn_down": Q.Q6_K,
    "output": Q.Q6_K,
}
# Types both gguf-py and quantlens decode, that a row of 256 weights holds whole blocks of.
ROW_TYPES = [
    Q.F32,
    Q.F16,
    Q.BF16,
    Q.Q4_0,
    Q.Q4_1,
    Q.Q5_0,
    Q.Q5_1,
    Q.Q8_0,
    Q.Q2_K,
    Q.Q3_K,
    Q.Q4_K,
    Q.Q5_K,
    Q.Q6_K,
    Q.IQ4_NL,
    Q.IQ4_XS,
]


def _corpus_file(relative: str) -> Path:
    path = CORPUS / relative
    if not path.is_file():
        print(f"SKIP: {path} is absent (the shared corpus is not checked out here)")
        pytest.skip(f"corpus file {relative} is absent")
    return path


def _blocks(rng: np.random.Generator, qtype: Q, rows: int, cols: int, special: bool) -> np.ndarray:
    """``rows`` rows of random ``qtype`` blocks (any bits, scales valid f16 numbers; with
    ``special``, some scales infinite or NaN), as ``(rows, row_bytes)`` bytes."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = rows * cols // block_size
    data = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for encoding, at in _core.scale_fields(int(qtype)):
        width = 2 if encoding == "f16" else 4
        if encoding == "f16":
            scales = rng.integers(0x1000, 0x3000, size=n_blocks, dtype=np.uint16)
            scales |= rng.integers(0, 2, size=n_blocks, dtype=np.uint16) << 15
            if special:  # every third block: +inf, a NaN, -inf, a signalling NaN
                every_third = np.arange(0, n_blocks, 3)
                picks = np.array([0x7C00, 0x7E01, 0xFC00, 0xFD00], np.uint16)
                scales[every_third] = picks[np.arange(every_third.size) % 4]
            data[:, at : at + width] = scales.view(np.uint8).reshape(n_blocks, 2)
        else:
            f32 = rng.uniform(-1, 1, size=n_blocks).astype(np.float32)
            data[:, at : at + width] = f32.view(np.uint8).reshape(n_blocks, 4)
    return data.reshape(rows, -1)


def _weights(
    rng: np.random.Generator, qtype: Q, rows: int, cols: int, special: bool
) -> tuple[np.ndarray, Q | None]:
    """A tensor's data for ``GGUFWriter.add_tensor`` and its ``raw_dtype``."""
    values = rng.standard_normal((rows, cols)).astype(np.float32)
    if special:
        nans_and_inf = np.array([0x7FC00001, 0xFFC00000, 0x7F800001, 0xFF800000], np.uint32)
        values.reshape(-1)[:4] = nans_and_inf.view(np.float32)
    if qtype == Q.F32:
        return values, None
    if qtype == Q.F16:
        return values.astype(np.float16).view(np.uint8).reshape(rows, -1), Q.F16
    if qtype == Q.BF16:
        bits = (values.view(np.uint32) >> 16).astype(np.uint16)
        return bits.view(np.uint8).reshape(rows, -1), Q.BF16
    return _blocks(rng, qtype, rows, cols, special), qtype


def write_llama_gguf(
    path: Path,
    types: dict[str, Q] | None = None,
    *,
    layers: int = 2,
    hidden: int = 256,
    heads: int = 4,
    kv_heads: int = 2,
    ffn: int = 512,
    vocab: int = 64,
    tied: bool = False,
    special: bool = False,
    seed: int = 0,
) -> Path:
    """A llama-architecture GGUF in the layout convert_hf_to_gguf.py writes, with a small
    tokenizer, weights of ``types`` per role (default Q4_K_M's), norms F32. ``special``
    puts NaN and infinite scales and values into some tensors."""
    types = {**Q4_K_M, **(types or {})}
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("quantlens tiny llama")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(15)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(vocab - 3)])
    writer.add_token_scores([float(-i) for i in range(vocab)])
    writer.add_token_types([2, 3, 3] + [1] * (vocab - 3))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)

    def add(name: str, role: str | None, rows: int, cols: int) -> None:
        qtype = types[role] if role else Q.F32
        data, raw = _weights(rng, qtype, rows, cols, special and role in ("attn_q", "ffn_norm"))
        if rows == 1:
            data = data.reshape(-1) if raw is None else data
        writer.add_tensor(name, data, raw_dtype=raw)

    add("token_embd.weight", "token_embd", vocab, hidden)
    for i in range(layers):
        add(f"blk.{i}.attn_norm.weight", None, 1, hidden)
        add(f"blk.{i}.attn_q.weight", "attn_q", hidden, hidden)
        add(f"blk.{i}.attn_k.weight", "attn_k", kv_heads * head_dim, hidden)
        add(f"blk.{i}.attn_v.weight", "attn_v", kv_heads * head_dim, hidden)
        add(f"blk.{i}.attn_output.weight", "attn_output", hidden, hidden)
        if special:
            norm = _weights(rng, Q.F32, 1, hidden, special=True)[0]
            writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm.reshape(-1))
        else:
            add(f"blk.{i}.ffn_norm.weight", None, 1, hidden)
        add(f"blk.{i}.ffn_gate.weight", "ffn_gate", ffn, hidden)
        add(f"blk.{i}.ffn_up.weight", "ffn_up", ffn, hidden)
        add(f"blk.{i}.ffn_down.weight", "ffn_down", hidden, ffn)
    add("output_norm.weight", None, 1, hidden)
    if not tied:
        add("output.weight", "output", vocab, hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _meta_model(path: Path) -> Any:
    # The config read quickly; that it equals transformers' own is checked separately.
    with qt.patch_transformers():
        config = transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config)


_BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def assert_same_tensors(ours: dict[str, Any], reference: dict[str, Any]) -> None:
    assert list(ours) == list(reference)
    for name, expected in reference.items():
        got = ours[name]
        assert got.dtype == expected.dtype, name
        assert got.shape == expected.shape, name
        assert got.is_contiguous(), name
        bits = _BITS.get(expected.dtype)
        if bits is None:
            assert torch.equal(got, expected), name
        else:
            assert torch.equal(got.view(bits), expected.view(bits)), name


def assert_loaders_agree(path: Path, dtypes: list[Any] = DTYPES) -> None:
    model = _meta_model(path)
    for dtype in dtypes:
        reference = hf_gguf.load_gguf_checkpoint(
            path, return_tensors=True, model_to_load=model, torch_dtype=dtype
        )
        ours = qt.load_gguf_checkpoint(
            path, return_tensors=True, model_to_load=model, torch_dtype=dtype
        )
        assert set(ours) == set(reference)
        for part in ("config", "tokenizer", "tokenizer_config", "ignore"):
            assert ours[part] == reference[part], part
        assert_same_tensors(ours["tensors"], reference["tensors"])
        expected_dtype = dtype or torch.float32
        assert {t.dtype for t in ours["tensors"].values()} == {expected_dtype}


# -- metadata ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative",
    [
        "gguf/vocab/ggml-vocab-llama-spm.gguf",
        "gguf/vocab/ggml-vocab-deepseek-coder.gguf",
        "gguf/vocab/ggml-vocab-gpt-2.gguf",
    ],
)
def test_metadata_equals_transformers_on_corpus_files(relative: str) -> None:
    path = _corpus_file(relative)
    reference = hf_gguf.load_gguf_checkpoint(path, return_tensors=False)
    ours = qt.load_gguf_checkpoint(path, return_tensors=False)
    assert ours == reference
    assert len(ours["tokenizer"]["tokens"]) > 30000


def test_metadata_equals_transformers_on_generated_llama(tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / "llama.gguf")
    ours = qt.load_gguf_checkpoint(path)
    assert ours == hf_gguf.load_gguf_checkpoint(path)
    assert ours["config"]["num_key_value_heads"] == 2
    assert ours["config"]["tie_word_embeddings"] is False


def test_reader_swap_is_undone() -> None:
    path = _corpus_file("gguf/github/ollama-llama-2-tiny-random.gguf")
    before = gguf.GGUFReader
    qt.load_gguf_checkpoint(path)
    assert gguf.GGUFReader is before


# -- tensors ----------------------------------------------------------------------------------


def test_tensors_equal_transformers_on_corpus_llama() -> None:
    # F16 and F32 tensors; float16 and float32 outputs are covered on generated files
    # (each reference load here reads a 32000-token vocabulary with gguf-py).
    path = _corpus_file("gguf/github/ollama-llama-2-tiny-random.gguf")
    assert_loaders_agree(path, [None, torch.bfloat16])


@pytest.mark.parametrize("tied", [False, True])
def test_tensors_equal_transformers_on_q4_k_m_llama(tmp_path: Path, tied: bool) -> None:
    path = write_llama_gguf(tmp_path / "llama.gguf", tied=tied, seed=int(tied))
    assert_loaders_agree(path)
    tensors = qt.load_gguf_state_dict(path)
    assert ("lm_head.weight" in tensors) is not tied
    assert "model.embed_tokens.weight" in tensors


def test_q_and_k_rows_are_permuted_like_transformers(tmp_path: Path) -> None:
    """The permutation matters (decoding without it gives different rows), and ours is
    transformers' for both the query heads and the fewer key/value heads."""
    path = write_llama_gguf(tmp_path / "llama.gguf", heads=8, kv_heads=2, hidden=512, seed=3)
    ours = qt.load_gguf_state_dict(path, dtype=torch.bfloat16)
    with GGUFFile(path) as gguf_file:
        for gguf_name, hf_name in [
            ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
            ("blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight"),
        ]:
            unpermuted = gguf_file.get_tensor(gguf_name, dtype=torch.bfloat16)
            assert not torch.equal(ours[hf_name], unpermuted)
            assert torch.equal(ours[hf_name].sort(dim=0).values, unpermuted.sort(dim=0).values)


def test_nan_and_infinite_values_match_bit_for_bit(tmp_path: Path) -> None:
    """Blocks with infinite and NaN scales and F32 norms holding NaN payloads: the NaN bits
    torch's casts produce are the reference, whichever dtype is asked."""
    path = write_llama_gguf(tmp_path / "llama.gguf", special=True, seed=5)
    with GGUFFile(path) as gguf_file:
        q = gguf_file.get_tensor("blk.0.attn_q.weight")
    assert np.isnan(q).any() and np.isfinite(q).any()
    assert_loaders_agree(path)


def test_every_row_type(tmp_path: Path) -> None:
    """One file per group of types, each role a different type."""
    roles = list(Q4_K_M)
    for start in range(0, len(ROW_TYPES), len(roles)):
        chunk = ROW_TYPES[start : start + len(roles)]
        types = {role: chunk[i % len(chunk)] for i, role in enumerate(roles)}
        path = write_llama_gguf(tmp_path / f"types{start}.gguf", types, seed=start)
        assert_loaders_agree(path)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    types=st.fixed_dictionaries({role: st.sampled_from(ROW_TYPES) for role in Q4_K_M}),
    heads=st.sampled_from([(4, 4), (4, 2), (4, 1), (8, 2)]),
    tied=st.booleans(),
    special=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_random_llama_files_match_transformers(
    tmp_path: Path,
    types: dict[str, Q],
    heads: tuple[int, int],
    tied: bool,
    special: bool,
    dtype: Any,
    seed: int,
) -> None:
    path = write_llama_gguf(
        tmp_path / f"random{seed}.gguf",
        types,
        heads=heads[0],
        kv_heads=heads[1],
        hidden=256,
        layers=1,
        tied=tied,
        special=special,
        seed=seed,
    )
    assert_loaders_agree(path, [dtype])


# -- from_pretrained --------------------------------------------------------------------------


def _needs_accelerate() -> None:
    try:
        import accelerate  # noqa: F401
    except ImportError:
        print("SKIP: transformers needs accelerate to load GGUF files in from_pretrained")
        pytest.skip("accelerate is not installed")


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_from_pretrained_with_the_patch_loads_the_same_model(tmp_path: Path, dtype: Any) -> None:
    _needs_accelerate()
    path = write_llama_gguf(tmp_path / "llama.gguf", seed=11)
    kwargs = {} if dtype is None else {"dtype": dtype}
    original = hf_gguf.load_gguf_checkpoint
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=path.name, **kwargs
    ).state_dict()

    calls: list[tuple[str, bool]] = []

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append((str(args[0]), bool(kw.get("return_tensors"))))
        return qt.load_gguf_checkpoint(*args, **kw)

    with qt.patch_transformers():
        assert hf_gguf.load_gguf_checkpoint is qt.load_gguf_checkpoint
        # Count the calls by wrapping ours inside the patch.
        hf_gguf.load_gguf_checkpoint = counting
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                tmp_path, gguf_file=path.name, **kwargs
            )
        finally:
            hf_gguf.load_gguf_checkpoint = qt.load_gguf_checkpoint
    assert hf_gguf.load_gguf_checkpoint is original
    assert (str(path), True) in calls
    assert_same_tensors(model.state_dict(), reference)


def test_patch_is_undone_after_an_exception(tmp_path: Path) -> None:
    original = hf_gguf.load_gguf_checkpoint
    with pytest.raises(RuntimeError, match="inside"), qt.patch_transformers():
        assert hf_gguf.load_gguf_checkpoint is qt.load_gguf_checkpoint
        with qt.patch_transformers():  # nested: the outer block still owns the patch
            pass
        assert hf_gguf.load_gguf_checkpoint is qt.load_gguf_checkpoint
        raise RuntimeError("inside")
    assert hf_gguf.load_gguf_checkpoint is original


def test_load_gguf_state_dict_builds_its_own_model(tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / "llama.gguf", seed=7)
    ours = qt.load_gguf_state_dict(path, dtype=torch.bfloat16)
    reference = hf_gguf.load_gguf_checkpoint(
        path, return_tensors=True, model_to_load=_meta_model(path), torch_dtype=torch.bfloat16
    )["tensors"]
    assert_same_tensors(ours, reference)
