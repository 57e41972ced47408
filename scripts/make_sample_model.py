"""Write the small GGUF model shipped in the package (``quantlens/data/``).

A two-layer llama-architecture model with seeded random weights and a byte-level
vocabulary, quantized by gguf-py's reference quantizers into a llama.cpp-style mix
(Q8_0 embeddings, Q4_0/Q5_1 projections, F16 output, F32 norms). The output is
deterministic; rerun only to change the sample.

    python scripts/make_sample_model.py python/quantlens/data/tiny-llama-q4_0.gguf
"""

from __future__ import annotations

import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, LlamaFileType, TokenType
from gguf.quants import quantize

N_VOCAB, N_EMBD, N_FF, N_LAYER, N_HEAD = 256, 128, 256, 2, 4


def weights(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)


def add(writer: GGUFWriter, name: str, data: np.ndarray, qtype: Q) -> None:
    if qtype == Q.F32:
        writer.add_tensor(name, data)
    elif qtype == Q.F16:
        writer.add_tensor(name, data.astype(np.float16))
    else:
        writer.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)


def main(path: str) -> None:
    rng = np.random.default_rng(20261127)
    writer = GGUFWriter(path, "llama")
    writer.add_name("quantlens tiny llama (random weights)")
    writer.add_context_length(256)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF)
    writer.add_block_count(N_LAYER)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_file_type(LlamaFileType.MOSTLY_Q4_0)
    writer.add_tokenizer_model("llama")
    tokens = [f"<0x{i:02X}>".encode() for i in range(N_VOCAB)]
    writer.add_token_list(tokens)
    writer.add_token_scores([float(-i) for i in range(N_VOCAB)])
    writer.add_token_types([TokenType.BYTE] * N_VOCAB)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)

    add(writer, "token_embd.weight", weights(rng, N_VOCAB, N_EMBD), Q.Q8_0)
    for i in range(N_LAYER):
        blk = f"blk.{i}"
        add(writer, f"{blk}.attn_norm.weight", np.ones(N_EMBD, np.float32), Q.F32)
        for proj in ("attn_q", "attn_k", "attn_v", "attn_output"):
            qtype = Q.Q5_1 if proj == "attn_v" else Q.Q4_0
            add(writer, f"{blk}.{proj}.weight", weights(rng, N_EMBD, N_EMBD), qtype)
        add(writer, f"{blk}.ffn_norm.weight", np.ones(N_EMBD, np.float32), Q.F32)
        add(writer, f"{blk}.ffn_gate.weight", weights(rng, N_FF, N_EMBD), Q.Q4_0)
        add(writer, f"{blk}.ffn_up.weight", weights(rng, N_FF, N_EMBD), Q.Q4_0)
        add(writer, f"{blk}.ffn_down.weight", weights(rng, N_EMBD, N_FF), Q.Q5_1)
    add(writer, "output_norm.weight", np.ones(N_EMBD, np.float32), Q.F32)
    add(writer, "output.weight", weights(rng, N_VOCAB, N_EMBD), Q.F16)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main(sys.argv[1])
