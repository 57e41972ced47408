"""`quantlens resolve`: every PipelineConfig field as an option, and what it prints."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFWriter, quants
from hub_server import HubServer, hub  # noqa: F401
from safetensors.torch import save_file
from transformers import LlamaConfig

from quantlens import cli, cli_resolve
from quantlens.config import DeviceSpec, KVCacheStrategy, PipelineConfig, SupportedEncoding

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
RESOLVE = [sys.executable, "-m", "quantlens.cli", "resolve", "--huggingface-repo-id"]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        architectures=["LlamaForCausalLM"],
    ).save_pretrained(folder)
    writer = GGUFWriter(folder / "tiny-Q4_0.gguf", "llama")
    values = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    writer.add_tensor(
        "token_embd.weight",
        quants.quantize(values, GGMLQuantizationType.Q4_0),
        raw_dtype=GGMLQuantizationType.Q4_0,
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(
        {"model.embed_tokens.weight": torch.randn(64, 32), "model.norm.weight": torch.ones(32)},
        folder / "model.safetensors",
    )
    return folder


def resolve_parser() -> argparse.ArgumentParser:
    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = commands.choices["resolve"]
    return found


def test_every_public_field_is_an_option_with_its_help() -> None:
    parser = resolve_parser()
    options = {
        option: action
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    }
    helps = PipelineConfig.help()
    public = [f.name for f in dataclasses.fields(PipelineConfig) if not f.name.startswith("_")]
    for name in public:
        option = "--" + name.replace("_", "-")
        assert option in options, option
        assert options[option].help == helps[name]
        assert options[option].dest == name
    assert "--json" in options
    assert options["--huggingface-repo-id"].required


def test_options_become_the_config(model_dir: Path) -> None:
    args = resolve_parser().parse_args(
        [
            "--huggingface-repo-id",
            str(model_dir),
            "--weight-path",
            "tiny-Q4_0.gguf",
            "--quantization-encoding",
            "q4_0",
            "--device-specs",
            "cpu",
            "--max-length",
            "128",
            "--max-new-tokens",
            "16",
            "--cache-strategy",
            "paged",
            "--enable-prefix-caching",
            "--gpu-memory-utilization",
            "0.5",
            "--top-k",
            "5",
            "--no-trust-remote-code",
            "--rope-type",
            "normal",
            "--engine",
            "huggingface",
            "--architecture",
            "LlamaForCausalLM",
        ]
    )
    config = cli_resolve.config_from_args(args)
    assert config.weight_path == [Path("tiny-Q4_0.gguf")]
    assert config.quantization_encoding is SupportedEncoding.q4_0
    assert config.device_specs == [DeviceSpec.cpu()]
    assert (config.max_length, config.max_new_tokens, config.top_k) == (128, 16, 5)
    assert config.cache_strategy is KVCacheStrategy.PAGED and config.enable_prefix_caching
    assert config.gpu_memory_utilization == 0.5
    assert config.rope_type is not None and config.rope_type.value == "normal"
    # Options not given keep the dataclass defaults.
    defaults = cli_resolve.config_from_args(
        resolve_parser().parse_args(["--huggingface-repo-id", str(model_dir)])
    )
    assert defaults == PipelineConfig(str(model_dir))


def test_resolve_prints_the_resolved_model(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["resolve", "--huggingface-repo-id", str(model_dir)]) == 0
    out = capsys.readouterr().out
    size = (model_dir / "model.safetensors").stat().st_size
    assert "architecture  LlamaForCausalLM" in out
    assert "encoding      float32" in out
    assert "format        safetensors" in out
    assert "dtype         float32" in out
    assert "devices       cpu" in out
    assert f"  model.safetensors  {size / 1024:.1f} KiB" in out.splitlines()


def test_resolve_json(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["resolve", "--huggingface-repo-id", str(model_dir), "--weight-path", "tiny-Q4_0.gguf"]
    assert cli.main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    size = (model_dir / "tiny-Q4_0.gguf").stat().st_size
    assert summary == {
        "repo": str(model_dir),
        "repo_type": "local",
        "weights_repo": str(model_dir),
        "architecture": "LlamaForCausalLM",
        "engine": None,
        "encoding": "q4_0",
        "format": "gguf",
        "dtype": "uint8",
        "devices": ["cpu"],
        "weight_files": [{"path": "tiny-Q4_0.gguf", "size": size}],
        "total_size": size,
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--huggingface-repo-id", "/no/such/folder"], "is not a local folder"),
        (["--device-specs", "gpu:7"], "gpu:7 was requested"),
        (["--max-length", "0"], "max_length must be 1 or more"),
        (["--weight-path", "missing.gguf"], "is not in the model folder"),
        (["--quantization-encoding", "q6_k"], "has no q6_k weight files"),
        (["--cache-strategy", "fastest"], "not a valid KVCacheStrategy"),
    ],
)
def test_errors_exit_1_with_one_line(
    model_dir: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["resolve", "--huggingface-repo-id", str(model_dir), *extra]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quantlens: error: ")
    assert message in lines[0]


def test_resolve_a_hub_repo(
    hub: HubServer,  # noqa: F811
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hub.add_repo("acme/tiny", model_dir)
    assert cli.main(["resolve", "--huggingface-repo-id", "acme/tiny", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["repo_type"] == "online"
    assert summary["architecture"] == "LlamaForCausalLM"
    assert summary["weight_files"] == [
        {"path": "model.safetensors", "size": (model_dir / "model.safetensors").stat().st_size}
    ]
    assert cli.main(["resolve", "--huggingface-repo-id", "acme/absent"]) == 1
    assert "not found on the Hugging Face Hub" in capsys.readouterr().err


def test_command_line_entry_point() -> None:
    folder = CORPUS / "gguf" / "generated"
    if not folder.exists():
        pytest.skip(f"corpus folder {folder} is missing")
    shard = "facenet-onet-f16-00001-of-00002.gguf"
    run = subprocess.run(
        [*RESOLVE, str(folder), "--weight-path", shard, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["encoding"] == "float16" and summary["format"] == "gguf"
    failed = subprocess.run(
        [*RESOLVE, str(folder), "--weight-path", "nope.gguf"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and "nope.gguf" in failed.stderr
