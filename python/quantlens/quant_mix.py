"""Which ggml type each tensor gets for a llama.cpp file-type label (``Q4_K_M``, ``Q8_0``,
``F16``...), following ``llama-quantize`` (``llama_tensor_get_type`` in llama.cpp's
``src/llama-quant.cpp``) for dense models without an importance matrix.

Rules applied, on GGUF tensor names:

* Only tensors with at least 2 dimensions (counted as ggml does, ignoring outer 1s) whose
  name ends in ``weight`` are quantized, except norms (``*_norm.weight``), MoE gates
  (``ffn_gate_inp``), ``position_embd`` and ``token_types``. The others are F32 when 1-D
  or a norm, else F16, as ``convert_hf_to_gguf.py --outtype f16`` leaves them.
* ``output.weight`` (or ``token_embd.weight`` when there is no ``output.weight``, i.e.
  tied embeddings) becomes Q6_K unless the label's type is Q8_0; Q8_0 when its rows are
  not whole blocks of the label's type.
* ``attn_v`` (and ``attn_qkv``, ``attn_kv_b``), counted in layer order as ``i`` of ``n``:
  Q2_K → Q4_K if n_head/n_head_kv ≥ 4 else Q3_K; Q3_K_M → Q5_K for the first two, else
  Q4_K; Q3_K_L → Q5_K; IQ4_NL/IQ4_XS → Q5_K if n_head/n_head_kv ≥ 4; Q4_K_M/Q5_K_M →
  Q6_K where ``use_more_bits(i, n)`` (the first and last eighth of the layers and every
  third one between); Q4_K_S → Q5_K for the first four.
* ``ffn_down`` of layer ``i`` of ``n`` (the block count): Q2_K → Q3_K; Q3_K_M → Q5_K in the
  first sixteenth, else Q4_K; Q3_K_L → Q5_K; Q4_K_M/Q5_K_M → Q6_K where
  ``use_more_bits``; IQ4_NL/IQ4_XS → Q5_K in the first eighth; Q4_K_S → Q5_K in the first
  eighth.
* ``attn_output``: Q2_K → Q3_K; Q3_K_M → Q4_K; Q3_K_L → Q5_K.
* Rows that are not whole blocks fall back as llama-quantize does (Q2_K/Q3_K → Q4_0,
  Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, IQ4_XS → IQ4_NL), and to F16 where that still does
  not fit or llama-quantize has no fallback (it stops there instead).
* ``pure`` (``llama-quantize --pure``) turns the per-tensor rules off: every quantizable
  tensor gets the label's type (fallbacks still apply).

Not modelled: mixture-of-experts and Falcon rules, the 70B attn_v rule (it needs the
model's size class), importance-matrix variants, and the i-quant labels below IQ4.
Labels ``Q3_K``, ``Q4_K`` and ``Q5_K`` mean ``_M``, as in llama-quantize.

The tests run llama.cpp's own ``llama_model_quantize`` on an F32 conversion for every
label here and require the same type and bytes for every tensor.

For F32, F16 and BF16 the rule is ``convert_hf_to_gguf.py``'s: 1-D tensors and norms are
F32, everything else the label's type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from quantlens.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

__all__ = ["FILE_TYPES", "FileType", "choose_types", "file_type", "ggml_n_dims"]

Q = GGMLQuantizationType


@dataclass(frozen=True)
class FileType:
    """A llama.cpp file type: its label, ``general.file_type`` id and main ggml type."""

    label: str
    id: int
    default: GGMLQuantizationType

    @property
    def quantized(self) -> bool:
        return self.default not in (Q.F32, Q.F16, Q.BF16)


FILE_TYPES: dict[str, FileType] = {
    ft.label: ft
    for ft in [
        FileType("F32", 0, Q.F32),
        FileType("F16", 1, Q.F16),
        FileType("BF16", 32, Q.BF16),
        FileType("Q4_0", 2, Q.Q4_0),
        FileType("Q4_1", 3, Q.Q4_1),
        FileType("Q5_0", 8, Q.Q5_0),
        FileType("Q5_1", 9, Q.Q5_1),
        FileType("Q8_0", 7, Q.Q8_0),
        FileType("Q2_K", 10, Q.Q2_K),
        FileType("Q3_K_S", 11, Q.Q3_K),
        FileType("Q3_K_M", 12, Q.Q3_K),
        FileType("Q3_K_L", 13, Q.Q3_K),
        FileType("Q4_K_S", 14, Q.Q4_K),
        FileType("Q4_K_M", 15, Q.Q4_K),
        FileType("Q5_K_S", 16, Q.Q5_K),
        FileType("Q5_K_M", 17, Q.Q5_K),
        FileType("Q6_K", 18, Q.Q6_K),
        FileType("IQ4_NL", 25, Q.IQ4_NL),
        FileType("IQ4_XS", 30, Q.IQ4_XS),
    ]
}
_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}


def file_type(label: str) -> FileType:
    """The file type of ``label`` (case-insensitive; ``Q4_K`` means ``Q4_K_M``)."""
    key = label.upper()
    key = _ALIASES.get(key, key)
    found = FILE_TYPES.get(key)
    if found is None:
        known = ", ".join([*FILE_TYPES, *_ALIASES])
        raise ValueError(f"unknown type {label!r}; one of {known}")
    return found


def ggml_n_dims(shape: Sequence[int]) -> int:
    """Dimensions as ggml counts them: outer dimensions of 1 do not count."""
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    return len(dims)


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _layer(name: str) -> int:
    found = re.match(r"blk\.(\d+)\.", name)
    return int(found.group(1)) if found else -1


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for needle, category in [
        ("attn_qkv.weight", "attn_qkv"),
        ("attn_kv_b.weight", "attn_v"),
        ("attn_v.weight", "attn_v"),
        ("attn_k.weight", "attn_k"),
        ("attn_q.weight", "attn_q"),
        ("attn_output.weight", "attn_output"),
        ("ffn_up", "ffn_up"),
        ("ffn_gate", "ffn_gate"),
        ("ffn_down", "ffn_down"),
    ]:
        if needle in name:
            return category
    return "other"


def _quantizable(name: str, shape: Sequence[int]) -> bool:
    if ggml_n_dims(shape) < 2 or not name.endswith("weight"):
        return False
    excluded = ("_norm.weight", "ffn_gate_inp.weight", "attn_rel_b.weight")
    if any(part in name for part in excluded):
        return False
    return name not in ("position_embd.weight", "token_types.weight")


def _unquantized(name: str, shape: Sequence[int], default: GGMLQuantizationType) -> Q:
    if ggml_n_dims(shape) <= 1 or name.endswith("_norm.weight"):
        return Q.F32
    return default


_FALLBACK = {
    Q.Q2_K: Q.Q4_0,
    Q.Q3_K: Q.Q4_0,
    Q.Q4_K: Q.Q5_0,
    Q.Q5_K: Q.Q5_1,
    Q.Q6_K: Q.Q8_0,
    Q.IQ4_XS: Q.IQ4_NL,
}


def _fits(qtype: GGMLQuantizationType, ncols: int) -> bool:
    return ncols % GGML_QUANT_SIZES[qtype][0] == 0


def _fallback(qtype: GGMLQuantizationType, ncols: int) -> GGMLQuantizationType:
    if _fits(qtype, ncols):
        return qtype
    other = _FALLBACK.get(qtype)
    return other if other is not None and _fits(other, ncols) else Q.F16


@dataclass
class _State:
    label: str
    n_attn_v: int
    n_layer: int
    n_gqa: int
    tied: bool
    i_attn_v: int = 0
    i_ffn_down: int = 0


def _mixed(s: _State, name: str, shape: Sequence[int], default: Q) -> Q:
    """llama-quantize's per-tensor rule for ``name``; counts attn_v and ffn_down."""
    label, category, new = s.label, _category(name), default
    if category == "output" or (s.tied and category == "token_embd"):
        if not _fits(default, shape[-1]):
            return Q.Q8_0
        return default if default == Q.Q8_0 else Q.Q6_K
    if category == "attn_v" or category == "attn_qkv":
        i, n = s.i_attn_v, s.n_attn_v
        if label == "Q2_K":
            new = Q.Q4_K if s.n_gqa >= 4 else Q.Q3_K
        elif label == "Q3_K_M":
            new = Q.Q5_K if i < 2 else Q.Q4_K
        elif label == "Q3_K_L" or (label in ("IQ4_NL", "IQ4_XS") and s.n_gqa >= 4):
            new = Q.Q5_K
        elif label in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            new = Q.Q6_K
        elif label == "Q4_K_S" and i < 4:
            new = Q.Q5_K
        s.i_attn_v += 1
        return new
    if category == "ffn_down":
        i, n = s.i_ffn_down, s.n_layer
        s.i_ffn_down += 1
        if label == "Q2_K":
            return Q.Q3_K
        if label == "Q3_K_M":
            return Q.Q5_K if i < n // 16 else Q.Q4_K
        if label == "Q3_K_L":
            return Q.Q5_K
        if label == "Q4_K_M":
            return Q.Q6_K if _use_more_bits(i, n) else new
        if i < n // 8 and label in ("IQ4_NL", "IQ4_XS"):
            return Q.Q5_K
        if label == "Q5_K_M" and _use_more_bits(i, n):
            return Q.Q6_K
        if label == "Q4_K_S" and i < n // 8:
            return Q.Q5_K
        return new
    if category == "attn_output":
        return {"Q2_K": Q.Q3_K, "Q3_K_M": Q.Q4_K, "Q3_K_L": Q.Q5_K}.get(label, new)
    return new


def choose_types(
    tensors: Sequence[tuple[str, Sequence[int]]],
    label: str,
    *,
    n_layer: int | None = None,
    n_head: int | None = None,
    n_head_kv: int | None = None,
    pure: bool = False,
) -> list[GGMLQuantizationType]:
    """The ggml type of each ``(GGUF name, row-major shape)`` for file type ``label``.

    ``n_layer`` defaults to the number of ``blk.N.`` layers named; ``n_head``/``n_head_kv``
    give the grouped-query ratio some rules use (1 when unknown).
    """
    ft = file_type(label)
    if not ft.quantized:
        return [_unquantized(name, shape, ft.default) for name, shape in tensors]
    names = [name for name, _ in tensors]
    if n_layer is None:
        n_layer = len({_layer(n) for n in names} - {-1})
    gqa = n_head // n_head_kv if n_head and n_head_kv else 1
    state = _State(
        label=ft.label,
        n_attn_v=sum(_category(n) in ("attn_v", "attn_qkv") for n in names),
        n_layer=n_layer,
        n_gqa=gqa,
        tied="output.weight" not in names,
    )
    chosen: dict[int, GGMLQuantizationType] = {}
    # llama.cpp visits tensors by layer (non-layer tensors first), then by name.
    order = sorted(range(len(tensors)), key=lambda i: (_layer(names[i]), names[i]))
    for i in order:
        name, shape = tensors[i]
        if not _quantizable(name, shape):
            chosen[i] = _unquantized(name, shape, Q.F16)
            continue
        new = ft.default if pure else _mixed(state, name, shape, ft.default)
        chosen[i] = _fallback(new, int(shape[-1]))
    return [chosen[i] for i in range(len(tensors))]
