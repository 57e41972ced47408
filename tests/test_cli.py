"""`quantlens inspect`: the layouts, the packaged sample model, and bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import quantlens
from quantlens.cli import main, sample_model_path


def test_sample_model_ships_and_opens() -> None:
    path = sample_model_path()
    assert path.is_file()
    with quantlens.open_weights(path) as f:
        assert f.metadata["general.architecture"] == "llama"
        assert len(f) == 21


def test_inspect_without_path_dumps_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert "* File is LITTLE endian" in out
    assert "GGUF.tensor_count = 21" in out
    # gguf-dump's tensor row: index, elements, ne padded to 4 dims, type, name.
    assert "      1:      32768 |   128,   256,     1,     1 | Q8_0    | token_embd.weight" in out
    assert "[STRING]   |      256 | tokenizer.ggml.tokens" in out
    assert "* Parameters: 393,856" in out
    assert "* File type: Q4_0" in out


def test_inspect_json_is_complete(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--json", "--full-arrays"]) == 0
    doc = json.loads(capsys.readouterr().out)
    with quantlens.open_weights(sample_model_path()) as f:
        assert doc["version"] == f.version
        assert [t["name"] for t in doc["tensors"]] == [t.name for t in f.tensors]
        tokens = doc["metadata"]["tokenizer.ggml.tokens"]
        assert tokens["length"] == 256
        assert tokens["value"] == f.metadata["tokenizer.ggml.tokens"].tolist()
        summary = doc["summary"]
        assert summary["parameters"] == sum(t.n_elements for t in f.tensors)
        assert summary["by_type"]["Q4_0"]["tensors"] == 10


def test_inspect_json_truncates_arrays_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--json", "--no-tensors"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "tensors" not in doc
    assert len(doc["metadata"]["tokenizer.ggml.tokens"]["value"]) == 6


def test_inspect_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# tiny-llama-q4_0.gguf")
    assert "| 1 | token_embd.weight | Q8_0 | 128 x 256 | 32,768 | 34816 |" in out


def test_no_tensors_leaves_out_tensor_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--no-tensors"]) == 0
    assert "Dumping 21 tensor(s)" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"GGUF\x03\x00\x00\x00\x01", "truncated"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n", "Git LFS pointer"),
        (b"<!DOCTYPE html><html><body>502</body></html>", "HTML page"),
    ],
)
def test_bad_file_is_one_line_error(
    tmp_path: Path, content: bytes, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    assert main(["inspect", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("quantlens: error: ")
    assert expected in captured.err


def test_missing_file_exit_code_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    result = subprocess.run(
        [sys.executable, "-m", "quantlens.cli", "inspect", str(missing)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "No such file or directory" in result.stderr
    assert str(missing) in result.stderr


def _write_safetensors(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {
        "embed.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "norm.weight": torch.ones(4, dtype=torch.bfloat16),
    }
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_inspect_safetensors_text_json_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.safetensors"
    _write_safetensors(path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("* safetensors model in 1 file(s)")
    assert "      1: format = 'pt'" in out
    assert "|     3,     4 | F32     | embed.weight" in out
    assert "* Parameters: 16" in out
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "safetensors" and doc["metadata"] == {"format": "pt"}
    assert [(t["name"], t["dtype"], t["shape"]) for t in doc["tensors"]] == [
        ("embed.weight", "F32", [3, 4]),
        ("norm.weight", "BF16", [4]),
    ]
    assert doc["summary"]["by_dtype"]["BF16"] == {"tensors": 1, "parameters": 4, "nbytes": 8}
    assert main(["inspect", str(path), "--markdown", "--no-tensors"]) == 0
    out = capsys.readouterr().out
    assert "| format | 'pt' |" in out and "## Tensors" not in out


def test_inspect_pytorch_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    path = tmp_path / "pytorch_model.bin"
    torch.save({"layer": {"weight": torch.zeros(2, 8, dtype=torch.float16)}, "step": 7}, path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("* pytorch model in 1 file(s)")
    assert "| F16     | layer.weight" in out
    assert "      1: step = '7'" in out  # non-tensor entries are metadata
