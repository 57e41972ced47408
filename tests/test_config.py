"""PipelineConfig: every documented member, the error table of the spec, and each MAX
weakness the decisions fix. Models are real files in temporary folders (gguf-py,
safetensors, torch.save, transformers' save_pretrained), the shared corpus, and repos
served by the local Hub stand-in."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFWriter, quants
from hub_server import HubServer, hub  # noqa: F401
from safetensors.torch import save_file
from transformers import AutoConfig, LlamaConfig

import quantlens
from quantlens import config as config_module
from quantlens.config import (
    DeviceSpec,
    HuggingFaceRepo,
    KVCacheStrategy,
    PipelineConfig,
    PipelineEngine,
    RepoType,
    RopeType,
    SupportedEncoding,
    WeightsFormat,
)
from quantlens.weights import Weights, load_weights

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
NO_CUDA = "no CUDA GPU visible to torch on this machine"

DOCUMENTED_FIELDS = [
    ("huggingface_repo_id", dataclasses.MISSING),
    ("engine", None),
    ("architecture", None),
    ("weight_path", []),
    ("device_specs", [DeviceSpec.cpu()]),
    ("quantization_encoding", None),
    ("serialized_model_path", None),
    ("save_to_serialized_model_path", None),
    ("max_length", 512),
    ("max_new_tokens", -1),
    ("max_cache_batch_size", 1),
    ("max_ce_batch_size", 32),
    ("cache_strategy", KVCacheStrategy.CONTINUOUS),
    ("max_num_steps", 1),
    ("pad_to_multiple_of", 2),
    ("kv_cache_page_size", 512),
    ("enable_prefix_caching", False),
    ("gpu_memory_utilization", 0.9),
    ("top_k", None),
    ("trust_remote_code", False),
    ("force_download", False),
    ("enable_echo", False),
    ("rope_type", None),
    ("_huggingface_config", None),
    ("_devices", []),
    ("_weights_converter", None),
    ("_weights_repo_id", None),
]


def corpus_dir(rel: str) -> Path:
    path = CORPUS / rel
    if not path.exists():
        pytest.skip(f"corpus folder {path} is missing")
    return path


# -- model folders -------------------------------------------------------------------------


def save_llama_config(folder: Path, **overrides: Any) -> None:
    settings: dict[str, Any] = {
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 1024,
        "architectures": ["LlamaForCausalLM"],
    }
    settings.update(overrides)
    LlamaConfig(**settings).save_pretrained(folder)


def write_gguf(path: Path, kind: GGMLQuantizationType = GGMLQuantizationType.Q4_0) -> Path:
    rng = np.random.default_rng(len(path.name))
    writer = GGUFWriter(path, "llama")
    for i in range(2):
        values = rng.standard_normal((4, 64)).astype(np.float32)
        writer.add_tensor(f"blk.{i}.attn_q.weight", quants.quantize(values, kind), raw_dtype=kind)
    writer.add_tensor("output_norm.weight", rng.standard_normal(64).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def llama_dir(tmp_path: Path) -> Path:
    """A local model folder: a Llama config.json, a Q4_0 GGUF and a bfloat16 safetensors."""
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    save_llama_config(folder)
    write_gguf(folder / "tiny-llama-Q4_0.gguf")
    save_file(
        {
            "model.embed_tokens.weight": torch.randn(64, 32).to(torch.bfloat16),
            "model.norm.weight": torch.ones(32, dtype=torch.bfloat16),
        },
        folder / "model.safetensors",
    )
    return folder


# -- fields, defaults, help ----------------------------------------------------------------


def test_fields_defaults_and_order_are_the_documented_ones(llama_dir: Path) -> None:
    fields = dataclasses.fields(PipelineConfig)
    assert [f.name for f in fields] == [name for name, _ in DOCUMENTED_FIELDS]
    config = PipelineConfig(str(llama_dir))
    for name, default in DOCUMENTED_FIELDS[1:]:
        assert getattr(config, name) == default, name
    assert isinstance(config.cache_strategy, KVCacheStrategy)
    # Mutable defaults are fresh per instance.
    other = PipelineConfig(str(llama_dir))
    assert other.weight_path is not config.weight_path
    assert other.device_specs is not config.device_specs


def test_config_names_are_exported_from_quantlens_and_config() -> None:
    for name in config_module.__all__:
        assert getattr(quantlens, name) is getattr(config_module, name), name
    assert HuggingFaceRepo.__module__ == "quantlens.hub"
    assert [m.value for m in PipelineEngine] == ["max", "huggingface"]
    assert [m.value for m in RepoType] == ["online", "local"]
    assert [m.value for m in RopeType] == ["none", "normal", "neox"]
    assert [m.value for m in WeightsFormat] == ["gguf", "safetensors", "pytorch"]
    assert [m.value for m in SupportedEncoding][:5] == [
        "float32",
        "bfloat16",
        "q4_k",
        "q4_0",
        "q6_k",
    ]


def test_help_is_generated_from_the_same_metadata_as_the_defaults() -> None:
    helps = PipelineConfig.help()
    public = [f for f in dataclasses.fields(PipelineConfig) if not f.name.startswith("_")]
    assert list(helps) == [f.name for f in public]
    for f in public:
        text = helps[f.name]
        assert text.startswith(f.metadata["help"]), f.name
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            assert text.endswith("(required)")
        elif f.default is None:
            assert text.endswith("(default: not set)"), f.name
        elif isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
            assert text.endswith(f"(default: {f.default})"), f.name
    # The texts MAX got wrong: top_k's default and the cache strategy's.
    assert "greedy" in helps["top_k"] and helps["top_k"].endswith("(default: not set)")
    assert helps["cache_strategy"].endswith("(default: continuous)")
    assert helps["device_specs"].endswith("(default: cpu)")
    assert helps["trust_remote_code"].endswith("(default: false)")


def test_strings_become_enums(llama_dir: Path) -> None:
    config = PipelineConfig(
        str(llama_dir),
        engine="MAX",  # type: ignore[arg-type]
        cache_strategy="paged",  # type: ignore[arg-type]
        rope_type="neox",  # type: ignore[arg-type]
        quantization_encoding="Q4_K_M",  # type: ignore[arg-type]
        device_specs=["cpu"],  # type: ignore[list-item]
    )
    assert config.engine is PipelineEngine.MAX
    assert config.cache_strategy is KVCacheStrategy.PAGED
    assert config.rope_type is RopeType.neox
    assert config.quantization_encoding is SupportedEncoding.q4_k
    assert config.device_specs == [DeviceSpec.cpu()]
    assert PipelineConfig(str(llama_dir), quantization_encoding="bf16").quantization_encoding is (  # type: ignore[arg-type]
        SupportedEncoding.bfloat16
    )
    with pytest.raises(ValueError, match="not a valid KVCacheStrategy"):
        PipelineConfig(str(llama_dir), cache_strategy="fast")  # type: ignore[arg-type]


# -- the spec's error table ------------------------------------------------------------------


@pytest.mark.parametrize("repo_id", ["", "   "])
def test_empty_repo_id(repo_id: str) -> None:
    with pytest.raises(ValueError, match="huggingface_repo_id must be given"):
        PipelineConfig(repo_id)


def test_repo_id_that_is_neither_folder_nor_hub_id(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(ValueError, match=r"is not a local folder .* not a valid Hugging Face"):
        PipelineConfig(str(missing))
    (tmp_path / "model.gguf").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file, not a model folder"):
        PipelineConfig(str(tmp_path / "model.gguf"))


def test_weight_path_none_and_bad_entries(llama_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"pass \[\] for none"):
        PipelineConfig(str(llama_dir), weight_path=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be str or Path, not int"):
        PipelineConfig(str(llama_dir), weight_path=[3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="must name files"):
        PipelineConfig(str(llama_dir), weight_path=[""])  # type: ignore[list-item]


def test_dtype_needs_an_encoding(llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="quantization_encoding is not set"):
        _ = PipelineConfig(str(llama_dir)).dtype


def test_weights_format_errors(llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weight_path is empty"):
        _ = PipelineConfig(str(llama_dir)).weights_format
    mixed = PipelineConfig(
        str(llama_dir), weight_path=["tiny-llama-Q4_0.gguf", "model.safetensors"]
    )
    with pytest.raises(ValueError, match="all of one format"):
        _ = mixed.weights_format
    (llama_dir / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot be told"):
        _ = PipelineConfig(str(llama_dir), weight_path=["weights.npz"]).weights_format


def test_missing_gpu_is_a_value_error_not_an_assert(llama_dir: Path) -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    config = PipelineConfig(str(llama_dir), device_specs=[DeviceSpec.accelerator(count)])
    with pytest.raises(ValueError, match=rf"gpu:{count} was requested but this machine has"):
        _ = config.devices
    with pytest.raises(ValueError, match="device_specs is empty"):
        PipelineConfig(str(llama_dir), device_specs=[])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_length": 0}, "max_length must be 1 or more"),
        ({"max_cache_batch_size": -3}, "max_cache_batch_size must be 1 or more"),
        ({"max_new_tokens": -2}, "max_new_tokens must be -1"),
        ({"max_length": 1.5}, "max_length must be an integer"),
        ({"max_num_steps": True}, "max_num_steps must be an integer"),
        ({"top_k": 0}, "top_k must be 1 or more"),
        ({"gpu_memory_utilization": 1.5}, r"fraction in \(0, 1\]"),
        ({"gpu_memory_utilization": 0}, r"fraction in \(0, 1\]"),
        ({"gpu_memory_utilization": "most"}, "must be a number"),
        ({"trust_remote_code": "yes"}, "must be True or False"),
        ({"enable_prefix_caching": True}, "needs cache_strategy=paged"),
    ],
)
def test_numbers_and_flags_are_checked(
    llama_dir: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PipelineConfig(str(llama_dir), **changes)


def test_valid_numbers_pass(llama_dir: Path) -> None:
    config = PipelineConfig(
        str(llama_dir),
        max_length=np.int64(4096),  # type: ignore[arg-type]
        max_new_tokens=0,
        top_k=40,
        gpu_memory_utilization=1,
        cache_strategy=KVCacheStrategy.PAGED,
        enable_prefix_caching=True,
    )
    assert config.max_length == 4096 and type(config.max_length) is int
    assert config.gpu_memory_utilization == 1.0


# -- local folders: relative paths resolve against the folder, never the CWD ---------------


def test_relative_weight_paths_resolve_against_the_folder(
    llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A different file of the same name in the current directory must not be used.
    write_gguf(elsewhere / "tiny-llama-Q4_0.gguf", GGMLQuantizationType.Q8_0)
    monkeypatch.chdir(elsewhere)
    config = PipelineConfig(str(llama_dir), weight_path="tiny-llama-Q4_0.gguf")  # type: ignore[arg-type]
    assert config.weight_path == [Path("tiny-llama-Q4_0.gguf")]
    assert config.local_weight_paths() == [llama_dir / "tiny-llama-Q4_0.gguf"]
    size = (llama_dir / "tiny-llama-Q4_0.gguf").stat().st_size
    assert size != (elsewhere / "tiny-llama-Q4_0.gguf").stat().st_size
    assert config.weights_size() == size
    assert config.weight_file_sizes() == [(Path("tiny-llama-Q4_0.gguf"), size)]
    weights = config.load_weights()
    assert weights.blk[0].attn_q.weight.encoding is SupportedEncoding.q4_0
    # A path that is only in the current directory is not in the model folder.
    (elsewhere / "only-here.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="is not in the model folder"):
        PipelineConfig(str(llama_dir), weight_path=["only-here.gguf"])


def test_weight_path_forms(llama_dir: Path) -> None:
    (llama_dir / "sub").mkdir()
    write_gguf(llama_dir / "sub" / "other.GGUF")
    config = PipelineConfig(
        str(llama_dir),
        weight_path=(Path("sub/other.GGUF"),),  # type: ignore[arg-type]
    )
    assert config.weight_path == [Path("sub/other.GGUF")]
    assert config.weights_format is WeightsFormat.gguf
    absolute = PipelineConfig(str(llama_dir), weight_path=[str(llama_dir / "model.safetensors")])
    assert absolute.weight_path == [llama_dir / "model.safetensors"]
    with pytest.raises(ValueError, match="does not exist"):
        PipelineConfig(str(llama_dir), weight_path=[str(llama_dir / "missing.gguf")])
    # "<this repo id>/file" is the file itself.
    named = PipelineConfig(str(llama_dir), weight_path=[f"{llama_dir}/model.safetensors"])
    assert named.local_weight_paths() == [llama_dir / "model.safetensors"]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a.gguf"], WeightsFormat.gguf),
        (["A.GGUF"], WeightsFormat.gguf),
        (["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"], WeightsFormat.gguf),
        (["model.SafeTensors"], WeightsFormat.safetensors),
        (
            ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
            WeightsFormat.safetensors,
        ),
        (
            ["model.safetensors.index.json", "model-00001-of-00001.safetensors"],
            WeightsFormat.safetensors,
        ),
        (["pytorch_model.bin"], WeightsFormat.pytorch),
        (["model.pt"], WeightsFormat.pytorch),
        (["model.PTH"], WeightsFormat.pytorch),
        (
            ["pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin"],
            WeightsFormat.pytorch,
        ),
    ],
)
def test_weights_format_from_suffixes(
    llama_dir: Path, names: list[str], expected: WeightsFormat
) -> None:
    for name in names:
        (llama_dir / name).write_bytes(b"")
    assert PipelineConfig(str(llama_dir), weight_path=names).weights_format is expected


@pytest.mark.parametrize(
    ("encoding", "dtype"),
    [
        (SupportedEncoding.q4_k, torch.uint8),
        (SupportedEncoding.q6_k, torch.uint8),
        (SupportedEncoding.bfloat16, torch.bfloat16),
        (SupportedEncoding.float32, torch.float32),
        (SupportedEncoding.float16, torch.float16),
    ],
)
def test_dtype_follows_the_encoding(
    llama_dir: Path, encoding: SupportedEncoding, dtype: torch.dtype
) -> None:
    assert PipelineConfig(str(llama_dir), quantization_encoding=encoding).dtype == dtype


def test_devices_and_device(llama_dir: Path) -> None:
    config = PipelineConfig(str(llama_dir))
    assert config.devices == [torch.device("cpu")]
    assert config.device == torch.device("cpu")
    assert config.devices is config.devices  # built once
    two = PipelineConfig(str(llama_dir), device_specs=[DeviceSpec.cpu(0), DeviceSpec.cpu()])
    assert two.devices == [torch.device("cpu")] * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_devices_on_cuda(llama_dir: Path) -> None:
    config = PipelineConfig(
        str(llama_dir),
        weight_path=["tiny-llama-Q4_0.gguf"],
        device_specs=[DeviceSpec.accelerator(0)],
    )
    assert config.device == torch.device("cuda", 0)
    leaf = config.load_weights().blk[0].attn_q.weight
    tensor = leaf.allocate(torch.float32, device=config.device)
    assert tensor.device == config.device
    torch.testing.assert_close(tensor.cpu(), leaf.allocate(torch.float32), rtol=0, atol=0)


# -- transformers config and architecture --------------------------------------------------


def test_huggingface_config_is_loaded_once_and_left_alone(llama_dir: Path) -> None:
    config = PipelineConfig(str(llama_dir), max_length=128)
    hf = config.huggingface_config
    assert type(hf).__name__ == "LlamaConfig"
    assert hf.max_position_embeddings == 1024
    assert config.huggingface_config is hf
    # MAX added and clamped a max_seq_len attribute; the config stays as loaded.
    assert not hasattr(hf, "max_seq_len")
    assert hf.to_dict() == AutoConfig.from_pretrained(str(llama_dir)).to_dict()


def test_huggingface_config_honours_trust_remote_code(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "configuration_tiny.py").write_text(
        "from transformers import PretrainedConfig\n\n\n"
        "class TinyConfig(PretrainedConfig):\n"
        "    model_type = 'quantlens-tiny-custom'\n\n"
        "    def __init__(self, width=3, **kwargs):\n"
        "        self.width = width\n"
        "        super().__init__(**kwargs)\n"
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "quantlens-tiny-custom",
                "width": 7,
                "architectures": ["TinyModel"],
                "auto_map": {"AutoConfig": "configuration_tiny.TinyConfig"},
            }
        )
    )
    refused = PipelineConfig(str(folder))
    with pytest.raises(ValueError, match="cannot load the transformers config"):
        _ = refused.huggingface_config
    trusted = PipelineConfig(str(folder), trust_remote_code=True)
    assert type(trusted.huggingface_config).__name__ == "TinyConfig"
    assert trusted.huggingface_config.width == 7


def test_missing_config_json_is_a_value_error(tmp_path: Path) -> None:
    write_gguf(tmp_path / "model-Q4_0.gguf")
    with pytest.raises(ValueError, match="cannot load the transformers config"):
        _ = PipelineConfig(str(tmp_path)).huggingface_config


def test_update_architecture(
    llama_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = PipelineConfig(str(llama_dir))
    config.update_architecture()
    assert config.architecture == "LlamaForCausalLM"
    fixed = PipelineConfig(str(llama_dir), architecture="Custom")
    fixed.update_architecture()
    assert fixed.architecture == "Custom" and fixed._huggingface_config is None
    several = tmp_path / "several"
    save_llama_config(several, architectures=["LlamaForCausalLM", "LlamaModel"])
    with caplog.at_level(logging.WARNING, logger="quantlens.config"):
        config = PipelineConfig(str(several))
        config.update_architecture()
    assert config.architecture == "LlamaForCausalLM"
    assert "several architectures" in caplog.text
    none = tmp_path / "none"
    save_llama_config(none, architectures=None)
    config = PipelineConfig(str(none))
    config.update_architecture()
    assert config.architecture is None and config.engine is PipelineEngine.HUGGINGFACE


def test_short_name(llama_dir: Path) -> None:
    assert PipelineConfig(str(llama_dir)).short_name == "tiny-llama"


def test_pickles_without_live_caches(llama_dir: Path) -> None:
    config = PipelineConfig(str(llama_dir), weight_path=["model.safetensors"])
    _ = config.huggingface_config, config.devices, config.huggingface_weights_repo()
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config
    assert copy._huggingface_config is None and copy._devices == []
    assert copy.local_weight_paths() == [llama_dir / "model.safetensors"]
    assert copy.huggingface_config.hidden_size == 32


# -- repos, resolution, weights ------------------------------------------------------------


def test_huggingface_weights_repo_is_made_once(llama_dir: Path) -> None:
    config = PipelineConfig(str(llama_dir))
    repo = config.huggingface_weights_repo()
    assert isinstance(repo, HuggingFaceRepo)
    assert repo.repo_type is RepoType.local
    assert config.huggingface_weights_repo() is repo
    assert config.repo_type is RepoType.local and config.weights_repo_id == str(llama_dir)


def test_resolve_picks_the_dominant_encoding_and_its_files(llama_dir: Path) -> None:
    config = PipelineConfig(str(llama_dir)).resolve()
    assert config.architecture == "LlamaForCausalLM"
    # The bfloat16 safetensors hold more parameters than the Q4_0 GGUF.
    assert config.quantization_encoding is SupportedEncoding.bfloat16
    assert config.weight_path == [Path("model.safetensors")]
    q4 = PipelineConfig(str(llama_dir), quantization_encoding="q4_0").resolve()  # type: ignore[arg-type]
    assert q4.weight_path == [Path("tiny-llama-Q4_0.gguf")]
    assert q4.weights_format is WeightsFormat.gguf and q4.dtype == torch.uint8


def test_resolve_reads_the_encoding_from_the_file_not_its_name(llama_dir: Path) -> None:
    # Named Q4_0 but holding Q8_0 blocks: the header decides.
    write_gguf(llama_dir / "liar-Q4_0.gguf", GGMLQuantizationType.Q8_0)
    config = PipelineConfig(str(llama_dir), weight_path=["liar-Q4_0.gguf"]).resolve()
    assert config.quantization_encoding is SupportedEncoding.q8_0
    with pytest.raises(ValueError, match="quantization_encoding is q4_0 but weight file"):
        PipelineConfig(
            str(llama_dir),
            weight_path=["liar-Q4_0.gguf"],
            quantization_encoding=SupportedEncoding.q4_0,
        ).resolve()


def test_resolve_takes_the_alternate_float_encoding(llama_dir: Path) -> None:
    config = PipelineConfig(str(llama_dir), quantization_encoding="float32").resolve()  # type: ignore[arg-type]
    assert config.weight_path == [Path("model.safetensors")]
    assert config.quantization_encoding is SupportedEncoding.bfloat16
    with pytest.raises(ValueError, match="has no q6_k weight files"):
        PipelineConfig(str(llama_dir), quantization_encoding="q6_k").resolve()  # type: ignore[arg-type]


def test_load_weights_resolves_and_loads(llama_dir: Path) -> None:
    config = PipelineConfig(str(llama_dir))
    weights = config.load_weights()
    assert isinstance(weights, Weights)
    assert config.weight_path == [Path("model.safetensors")]
    assert weights.model.norm.weight.allocate().tolist() == [1.0] * 32


def test_load_weights_split_gguf_from_the_corpus() -> None:
    folder = corpus_dir("gguf/generated")
    shards = ["facenet-onet-f16-00001-of-00002.gguf", "facenet-onet-f16-00002-of-00002.gguf"]
    config = PipelineConfig(str(folder), weight_path=shards)
    assert config.weights_format is WeightsFormat.gguf
    weights = config.load_weights()  # MAX refused more than one GGUF file
    assert len(weights.keys()) == 21
    assert config.resolve().quantization_encoding is SupportedEncoding.float16
    assert config.weights_size() == sum((folder / s).stat().st_size for s in shards)


def test_load_weights_sharded_safetensors_from_the_corpus() -> None:
    folder = corpus_dir("safetensors/generated/hf-gpt2-tiny-bf16")
    config = PipelineConfig(str(folder)).resolve()
    assert config.architecture == "GPT2LMHeadModel"
    assert config.quantization_encoding is SupportedEncoding.bfloat16
    assert [p.name for p in config.weight_path] == [
        f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)
    ]
    weights = config.load_weights()
    assert weights.transformer.h[1].mlp.c_fc.weight.dtype == torch.bfloat16
    with_index = PipelineConfig(
        str(folder), weight_path=["model.safetensors.index.json", *config.weight_path]
    )
    assert with_index.weights_format is WeightsFormat.safetensors
    assert len(with_index.load_weights().keys()) == len(weights.keys())


def test_load_weights_pytorch_from_the_corpus() -> None:
    folder = corpus_dir("pytorch/generated/hf-gpt2-tiny-f32-bin")
    config = PipelineConfig(str(folder)).resolve()
    assert config.weights_format is WeightsFormat.pytorch  # MAX could not load these
    assert config.quantization_encoding is SupportedEncoding.float32
    weights = config.load_weights()
    expected = torch.load(folder / "pytorch_model.bin", weights_only=True)
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name].allocate(), tensor, rtol=0, atol=0)


def test_load_weights_uses_the_converter(llama_dir: Path) -> None:
    calls: list[tuple[list[Path], dict[str, Any]]] = []

    class Renamer:
        @staticmethod
        def load_weights(weight_path: list[Path], **kwargs: Any) -> Weights:
            calls.append((weight_path, kwargs))
            return load_weights(weight_path)

    config = PipelineConfig(
        str(llama_dir), weight_path=["model.safetensors"], _weights_converter=Renamer
    )
    config.load_weights()
    assert calls == [([llama_dir / "model.safetensors"], {"config": config})]


def test_download_weights_leaves_local_files_and_weight_path_alone(llama_dir: Path) -> None:
    config = PipelineConfig(str(llama_dir), weight_path=["model.safetensors"], force_download=True)
    config.download_weights()
    assert config.weight_path == [Path("model.safetensors")]
    assert config.local_weight_paths() == [llama_dir / "model.safetensors"]


# -- the Hub (served locally) --------------------------------------------------------------


@pytest.fixture
def hub_repo(hub: HubServer, llama_dir: Path) -> str:  # noqa: F811
    hub.add_repo("acme/tiny-llama", llama_dir)
    return "acme/tiny-llama"


def test_hub_repo_resolves_without_downloading_weights(hub: HubServer, hub_repo: str) -> None:  # noqa: F811
    config = PipelineConfig(hub_repo)
    assert config.repo_type is RepoType.online and config.short_name == hub_repo
    config.resolve()
    assert config.architecture == "LlamaForCausalLM"
    assert config.quantization_encoding is SupportedEncoding.bfloat16
    assert config.weight_path == [Path("model.safetensors")]
    assert config.weights_size() == 64 * 32 * 2 + 32 * 2 + _header_size(config)
    # Sizes come from the repo listing: the weights' bytes were never fetched whole.
    full = [r for r in hub.requests_to(r"model\.safetensors$", "GET") if "range" not in r.headers]
    assert full == []
    # One repo-info request for the whole life of the config.
    assert len(hub.requests_to(r"^/api/models/acme/tiny-llama")) == 1


def _header_size(config: PipelineConfig) -> int:
    repo = config.huggingface_weights_repo()
    size = repo.size_of("model.safetensors")
    assert size is not None
    return size - (64 * 32 * 2 + 32 * 2)


def test_hub_download_is_parallel_honours_force_and_keeps_weight_path(
    hub: HubServer,  # noqa: F811
    hub_repo: str,
) -> None:
    names = ["tiny-llama-Q4_0.gguf", "model.safetensors"]
    config = PipelineConfig(hub_repo, weight_path=names)
    config.download_weights()
    assert config.weight_path == [Path(n) for n in names]
    local = config.local_weight_paths()
    assert [p.name for p in local] == names and all(p.is_file() for p in local)
    gets = len(hub.requests_to(r"tiny-llama-Q4_0\.gguf$", "GET"))
    config.download_weights()  # cached: no new GET
    assert len(hub.requests_to(r"tiny-llama-Q4_0\.gguf$", "GET")) == gets
    forced = PipelineConfig(hub_repo, weight_path=names, force_download=True)
    forced.download_weights()
    assert len(hub.requests_to(r"tiny-llama-Q4_0\.gguf$", "GET")) == gets + 1
    assert forced.local_weight_paths() == local
    with pytest.raises(ValueError, match="all of one format"):
        forced.load_weights()
    hub.clear_log()
    weights = PipelineConfig(hub_repo, weight_path=names[:1]).load_weights()
    assert weights.format is WeightsFormat.gguf
    assert hub.requests_to(r"\.gguf$", "GET") == []


def test_hub_weight_path_in_another_repo(
    hub: HubServer,  # noqa: F811
    hub_repo: str,
    tmp_path: Path,
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    write_gguf(other / "model-Q8_0.gguf", GGMLQuantizationType.Q8_0)
    hub.add_repo("acme/weights", other)
    hub.add_repo("acme/more", other)
    config = PipelineConfig(hub_repo, weight_path=["acme/weights/model-Q8_0.gguf"])
    assert config.weight_path == [Path("model-Q8_0.gguf")]
    assert config._weights_repo_id == "acme/weights"
    assert config.huggingface_weights_repo().repo_id == "acme/weights"
    assert config.resolve().quantization_encoding is SupportedEncoding.q8_0
    assert config.load_weights().blk[1].attn_q.weight.encoding is SupportedEncoding.q8_0
    with pytest.raises(ValueError, match="come from two repos"):
        PipelineConfig(
            hub_repo,
            weight_path=["acme/weights/model-Q8_0.gguf", "acme/more/model-Q8_0.gguf"],
        )


def test_hub_missing_and_gated_repos(hub: HubServer, llama_dir: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="not found on the Hugging Face Hub"):
        PipelineConfig("acme/missing")
    hub.add_repo("acme/gated", llama_dir, gated=True)
    config = PipelineConfig("acme/gated", weight_path=["model.safetensors"])
    with pytest.raises(ValueError, match="gated"):
        config.download_weights()


def test_hub_config_and_offline_use(
    hub: HubServer,  # noqa: F811
    hub_repo: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = PipelineConfig(hub_repo, weight_path=["model.safetensors"])
    assert config.huggingface_config.hidden_size == 32
    config.download_weights()
    from huggingface_hub import constants

    import quantlens.hub

    quantlens.hub.clear_cache()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.clear_log()
    offline = PipelineConfig(hub_repo, weight_path=["model.safetensors"])
    assert offline.huggingface_config.hidden_size == 32
    assert offline.load_weights().model.norm.weight.allocate().tolist() == [1.0] * 32
    assert hub.requests == []


def test_hub_transient_errors_are_retried(hub: HubServer, hub_repo: str) -> None:  # noqa: F811
    hub.fail_next(r"model\.safetensors$", 503, times=2, method="GET")
    config = PipelineConfig(hub_repo, weight_path=["model.safetensors"])
    config.download_weights()
    assert config.local_weight_paths()[0].stat().st_size == config.weights_size()


def test_hub_local_file_with_hub_repo_for_the_rest(
    hub: HubServer,  # noqa: F811
    hub_repo: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    write_gguf(tmp_path / "mine-Q8_0.gguf", GGMLQuantizationType.Q8_0)
    config = PipelineConfig(hub_repo, weight_path=["mine-Q8_0.gguf"])
    # Made absolute at once, so that a later chdir cannot change it.
    assert config.weight_path == [tmp_path / "mine-Q8_0.gguf"]
    monkeypatch.chdir(os.sep)
    assert config.resolve().quantization_encoding is SupportedEncoding.q8_0
    hub.clear_log()
    config.download_weights()
    assert hub.requests_to("mine") == []


def test_hub_weights_repo_given_for_a_local_model(
    hub: HubServer,  # noqa: F811
    llama_dir: Path,
    tmp_path: Path,
) -> None:
    other = tmp_path / "weights-only"
    other.mkdir()
    write_gguf(other / "w-Q8_0.gguf", GGMLQuantizationType.Q8_0)
    hub.add_repo("acme/weights", other)
    config = PipelineConfig(
        str(llama_dir), weight_path=["w-Q8_0.gguf"], _weights_repo_id="acme/weights"
    )
    assert config.weights_repo_id == "acme/weights"
    assert config.huggingface_config.hidden_size == 32  # from the local folder
    assert config.weights_size() == (other / "w-Q8_0.gguf").stat().st_size
    assert config.load_weights().blk[0].attn_q.weight.encoding is SupportedEncoding.q8_0


def test_hub_downloads_run_in_parallel(
    hub: HubServer,  # noqa: F811
    hub_repo: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    import quantlens.hub

    # Each download waits until the other has started: a sequential loop would time out.
    both_started = threading.Barrier(2, timeout=20)
    original = quantlens.hub.HuggingFaceRepo.download

    def download(self: HuggingFaceRepo, filename: str, force_download: bool = False) -> Path:
        both_started.wait()
        return original(self, filename, force_download=force_download)

    monkeypatch.setattr(quantlens.hub.HuggingFaceRepo, "download", download)
    config = PipelineConfig(hub_repo, weight_path=["tiny-llama-Q4_0.gguf", "model.safetensors"])
    config.download_weights()
    assert all(p.is_file() for p in config.local_weight_paths())


def test_encoding_weighs_every_shard_not_only_the_first(tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    folder.mkdir()
    # The first shard holds a small float32 norm, the second the big bfloat16 matrices.
    save_file({"model.norm.weight": torch.ones(16)}, folder / "model-00001-of-00002.safetensors")
    save_file(
        {"model.embed.weight": torch.zeros(64, 64, dtype=torch.bfloat16)},
        folder / "model-00002-of-00002.safetensors",
    )
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    config = PipelineConfig(str(folder), weight_path=shards).resolve()
    assert config.quantization_encoding is SupportedEncoding.bfloat16
    assert PipelineConfig(str(folder)).resolve().weight_path == [Path(s) for s in shards]
