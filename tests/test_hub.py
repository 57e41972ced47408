"""HuggingFaceRepo on local folders and on a local Hub stand-in reached through the real
huggingface_hub client (see ``hub_server``)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter, quant_shape_to_byte_shape
from gguf.quants import quantize
from hub_server import HubServer, hub_subprocess_env, serve_hub

import quantlens.hub
from quantlens.config_enums import RepoType, SupportedEncoding, WeightsFormat
from quantlens.hub import HuggingFaceRepo, model_files, weight_files_of

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
E = SupportedEncoding


def corpus(relative: str) -> Path:
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"{path} is not available (the shared corpus is absent)")
    return path


@pytest.fixture
def hub(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubServer]:
    with serve_hub(tmp_path_factory.mktemp("hf-home"), monkeypatch) as server:
        yield server


# -- file builders ------------------------------------------------------------------------


def write_gguf(
    path: Path,
    tensors: list[tuple[str, GGMLQuantizationType, np.ndarray]],
    *,
    file_type: int | None = None,
    vocab: int = 0,
) -> Path:
    """A GGUF file written by gguf-py; ``vocab`` adds that many tokens to the header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(path, "llama")
    if file_type is not None:
        writer.add_file_type(file_type)
    if vocab:
        tokens = [f"token-{i:07d}-" + "x" * 16 for i in range(vocab)]
        writer.add_key_value(
            "tokenizer.ggml.tokens", tokens, GGUFValueType.ARRAY, GGUFValueType.STRING
        )
    for name, ggml_type, values in tensors:
        if ggml_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            dtype = np.float32 if ggml_type == GGMLQuantizationType.F32 else np.float16
            writer.add_tensor(name, values.astype(dtype))
        elif ggml_type in (GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K):
            # gguf-py cannot quantize k-quants; encodings come from the header anyway.
            shape = quant_shape_to_byte_shape(values.shape, ggml_type)
            blocks = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
            writer.add_tensor(name, blocks, raw_dtype=ggml_type)
        else:
            writer.add_tensor(name, quantize(values, ggml_type), raw_dtype=ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def matrix(rows: int, cols: int = 256, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> Path:
    """A safetensors file written by the ``safetensors`` package from torch tensors."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    made = {n: torch.zeros(shape, dtype=getattr(torch, d)) for n, (d, shape) in tensors.items()}
    save_file(made, str(path))
    return path


def write_torch(path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> Path:
    torch = pytest.importorskip("torch")
    path.parent.mkdir(parents=True, exist_ok=True)
    made = {n: torch.ones(shape, dtype=getattr(torch, d)) for n, (d, shape) in tensors.items()}
    torch.save(made, path)
    return path


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """A folder with weights of every format, nested, plus files that are not weights."""
    root = tmp_path / "repo"
    write_gguf(root / "gguf" / "m-q4_0.gguf", [("w", GGMLQuantizationType.Q4_1, matrix(8))])
    write_gguf(root / "m-Q8_0.GGUF", [("w", GGMLQuantizationType.Q8_0, matrix(8))])
    write_safetensors(root / "model.safetensors", {"w": ("bfloat16", (64, 64))})
    write_safetensors(root / "consolidated.safetensors", {"w": ("bfloat16", (64, 64))})
    write_torch(root / "pytorch_model.bin", {"w": ("float16", (16,))})
    write_torch(root / "sub" / "extra.PTH", {"w": ("float16", (16,))})
    write_torch(root / "training_args.bin", {"lr": ("float32", (1,))})
    write_torch(root / "optimizer.pt", {"m": ("float32", (16,))})
    write_torch(root / "rng_state_3.pth", {"s": ("int64", (4,))})
    (root / "config.json").write_text("{}")
    (root / ".git").mkdir()
    (root / ".git" / "hidden.bin").write_bytes(b"x")
    return root


# -- the dataclass ------------------------------------------------------------------------


def test_signature_fields_and_str(tmp_path: Path) -> None:
    fields = {f.name: f.default for f in dataclasses.fields(HuggingFaceRepo) if f.init}
    assert fields == {"repo_id": dataclasses.MISSING, "trust_remote_code": False, "repo_type": None}
    repo = HuggingFaceRepo(str(tmp_path))
    assert str(repo) == repr(repo) == str(tmp_path)
    assert repo.repo_type is RepoType.local and repo.trust_remote_code is False
    assert HuggingFaceRepo(str(tmp_path), repo_type="local") == repo  # type: ignore[arg-type]


def test_local_repo_must_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        HuggingFaceRepo(str(tmp_path / "file.gguf"))
    with pytest.raises(ValueError, match="does not exist"):
        HuggingFaceRepo(str(tmp_path / "nope"), repo_type=RepoType.local)
    with pytest.raises(ValueError, match="must be given"):
        HuggingFaceRepo("")


# -- weight files -------------------------------------------------------------------------


def test_weight_files_local_recursive_sorted_without_non_weights(mixed_folder: Path) -> None:
    repo = HuggingFaceRepo(str(mixed_folder))
    assert repo.weight_files == {
        WeightsFormat.safetensors: ["model.safetensors"],
        WeightsFormat.gguf: ["gguf/m-q4_0.gguf", "m-Q8_0.GGUF"],
        WeightsFormat.pytorch: ["pytorch_model.bin", "sub/extra.PTH"],
    }
    assert repo.formats_available == [
        WeightsFormat.safetensors,
        WeightsFormat.gguf,
        WeightsFormat.pytorch,
    ]


def test_weight_file_rules() -> None:
    # A lone consolidated file is the model; beside others it is a duplicate.
    assert weight_files_of(["consolidated.safetensors"]) == {
        WeightsFormat.safetensors: ["consolidated.safetensors"]
    }
    assert weight_files_of(["b.safetensors", "consolidated.00.safetensors", "a.safetensors"]) == {
        WeightsFormat.safetensors: ["a.safetensors", "b.safetensors"]
    }
    names = ["training_args.bin", "scheduler.pt", "scaler.pt", "rng_state.pth", "adapter_model.bin"]
    assert weight_files_of(names) == {WeightsFormat.pytorch: ["adapter_model.bin"]}
    assert model_files(["x-00002-of-00002.gguf", "a.gguf", "x-00001-of-00002.gguf"]) == [
        ("a.gguf",),
        ("x-00001-of-00002.gguf", "x-00002-of-00002.gguf"),
    ]


def test_info_is_refused_for_local_repos(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="local folder"):
        HuggingFaceRepo(str(tmp_path)).info  # noqa: B018


def test_local_files_resolve_against_the_repo_not_the_cwd(
    mixed_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(mixed_folder)
    repo = HuggingFaceRepo(".")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert repo.file_exists("sub/extra.PTH") and not repo.file_exists("missing.bin")
    assert repo.size_of("config.json") == 2 and repo.size_of("missing.bin") is None
    path = repo.download("gguf/m-q4_0.gguf", force_download=True)
    assert path == mixed_folder / "gguf" / "m-q4_0.gguf" and path.is_absolute()
    with pytest.raises(FileNotFoundError, match=re.escape("missing.bin")):
        repo.download("missing.bin")
    assert repo.encoding_for_file("gguf/m-q4_0.gguf") is E.q4_1


# -- encodings ----------------------------------------------------------------------------


def test_encoding_for_file_reads_headers_not_names(mixed_folder: Path, tmp_path: Path) -> None:
    repo = HuggingFaceRepo(str(mixed_folder))
    assert repo.encoding_for_file("gguf/m-q4_0.gguf") is E.q4_1  # named q4_0, holds Q4_1
    assert repo.encoding_for_file(Path("m-Q8_0.GGUF")) is E.q8_0
    assert repo.encoding_for_file("model.safetensors") is E.bfloat16
    assert repo.encoding_for_file("pytorch_model.bin") is E.float16
    # An F16-only checkpoint is float16 (MAX found no encoding at all).
    write_safetensors(tmp_path / "f16" / "model-bf16.safetensors", {"w": ("float16", (8, 8))})
    f16 = HuggingFaceRepo(str(tmp_path / "f16"))
    assert f16.encoding_for_file("model-bf16.safetensors") is E.float16
    assert f16.supported_encodings == [E.float16]
    # Absolute paths anywhere are read as they are.
    absolute = tmp_path / "f16" / "model-bf16.safetensors"
    assert repo.encoding_for_file(absolute) is E.float16


def test_encoding_for_file_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken-q4_0.gguf").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    write_safetensors(tmp_path / "ints.safetensors", {"ids": ("bool", (8,))})
    repo = HuggingFaceRepo(str(tmp_path))
    with pytest.raises(ValueError, match=re.escape("broken-q4_0.gguf")):
        repo.encoding_for_file("broken-q4_0.gguf")
    with pytest.raises(ValueError, match=re.escape("ints.safetensors holds no tensors")):
        repo.encoding_for_file("ints.safetensors")
    with pytest.raises(FileNotFoundError):
        repo.encoding_for_file("absent.gguf")


def test_gguf_file_type_leads_and_mixed_tensors_weigh_by_bytes(tmp_path: Path) -> None:
    q4_k_m = [
        ("blk.0.attn_q.weight", GGMLQuantizationType.Q4_K, matrix(8)),
        # More Q6_K bytes than Q4_K bytes: the stated Q4_K_M still leads.
        ("output.weight", GGMLQuantizationType.Q6_K, matrix(12)),
        ("norm", GGMLQuantizationType.F32, matrix(1)),
    ]
    write_gguf(tmp_path / "stated.gguf", q4_k_m, file_type=15)
    write_gguf(tmp_path / "unstated.gguf", q4_k_m)
    repo = HuggingFaceRepo(str(tmp_path))
    assert repo.encoding_for_file("stated.gguf") is E.q4_k
    assert repo.encoding_for_file("unstated.gguf") is E.q6_k


def test_split_gguf_is_one_model() -> None:
    folder = corpus("gguf/generated")
    repo = HuggingFaceRepo(str(folder))
    shards = ["facenet-onet-f16-00001-of-00002.gguf", "facenet-onet-f16-00002-of-00002.gguf"]
    assert repo.encoding_for_file(shards[1]) is E.float16
    assert repo.files_for_encoding(E.float16) == {WeightsFormat.gguf: [Path(s) for s in shards]}
    assert repo.files_for_encoding(E.q4_k) == {
        WeightsFormat.gguf: [
            Path("resemblyzer-mixed-q4_k.be.gguf"),
            Path("resemblyzer-mixed-q4_k.gguf"),
        ]
    }
    assert E.float16 in repo.supported_encodings and E.q8_0 in repo.supported_encodings


def test_sharded_safetensors_corpus_repo() -> None:
    folder = corpus("safetensors/generated/hf-gpt2-tiny-bf16")
    repo = HuggingFaceRepo(str(folder))
    shards = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert repo.weight_files == {WeightsFormat.safetensors: shards}
    assert repo.supported_encodings == [E.bfloat16]
    assert repo.files_for_encoding(E.bfloat16) == {
        WeightsFormat.safetensors: [Path(s) for s in shards]
    }
    assert repo.files_for_encoding(E.float32) == {}
    assert repo.files_for_encoding(E.float32, alternate_encoding=E.bfloat16) == {
        WeightsFormat.safetensors: [Path(s) for s in shards]
    }
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards


def test_pytorch_corpus_repo_is_read_from_its_checkpoint() -> None:
    torch = pytest.importorskip("torch")
    folder = corpus("pytorch/generated/hf-gpt2-tiny-f32-bin")
    repo = HuggingFaceRepo(str(folder))
    state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    assert {t.dtype for t in state.values()} == {torch.float32}
    # config.json says bfloat16, which MAX would have believed; the checkpoint is float32.
    config = json.loads((folder / "config.json").read_text())
    assert (config.get("torch_dtype") or config.get("dtype")) == "bfloat16"
    assert repo.supported_encodings == [E.float32]
    assert repo.files_for_encoding(E.float32, WeightsFormat.pytorch) == {
        WeightsFormat.pytorch: [Path("pytorch_model.bin")]
    }
    assert repo.files_for_encoding(E.bfloat16, WeightsFormat.pytorch) == {}


def test_supported_encodings_weigh_every_shard(tmp_path: Path) -> None:
    # MAX read only the first shard: a small F32 one here.
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"n": ("float32", (64,))})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"w": ("bfloat16", (64, 64))})
    repo = HuggingFaceRepo(str(tmp_path))
    assert repo.supported_encodings == [E.bfloat16, E.float32]


DETERMINISM = """
import sys
from quantlens.hub import HuggingFaceRepo
print(",".join(e.name for e in HuggingFaceRepo(sys.argv[1]).supported_encodings))
"""


def test_mixed_f32_bf16_is_the_same_in_every_process(tmp_path: Path) -> None:
    tie = tmp_path / "tie"
    write_safetensors(
        tie / "model.safetensors", {"a": ("bfloat16", (32,)), "b": ("float32", (32,))}
    )
    heavy = tmp_path / "heavy"
    write_safetensors(
        heavy / "model.safetensors",
        {"a": ("bfloat16", (64, 64)), "norm": ("float32", (64,)), "pos": ("int64", (64,))},
    )
    outputs = set()
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", DETERMINISM, str(tie)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        heavy_result = subprocess.run(
            [sys.executable, "-c", DETERMINISM, str(heavy)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add((result.stdout.strip(), heavy_result.stdout.strip()))
    # Ties keep the declaration order; otherwise parameters decide; int64 is not an encoding.
    assert outputs == {("float32,bfloat16", "bfloat16,float32")}


def test_files_for_encoding_by_format_and_alternate(mixed_folder: Path) -> None:
    repo = HuggingFaceRepo(str(mixed_folder))
    assert repo.files_for_encoding(E.q4_1) == {WeightsFormat.gguf: [Path("gguf/m-q4_0.gguf")]}
    assert repo.files_for_encoding(E.q4_0) == {}
    assert repo.files_for_encoding(E.bfloat16) == {
        WeightsFormat.safetensors: [Path("model.safetensors")]
    }
    assert repo.files_for_encoding(E.bfloat16, WeightsFormat.gguf) == {}
    # The alternate is honoured with a format too (MAX ignored it there).
    assert repo.files_for_encoding(E.q6_k, WeightsFormat.gguf, alternate_encoding=E.q8_0) == {
        WeightsFormat.gguf: [Path("m-Q8_0.GGUF")]
    }
    assert repo.files_for_encoding(E.float16, WeightsFormat.pytorch) == {
        WeightsFormat.pytorch: [Path("pytorch_model.bin"), Path("sub/extra.PTH")]
    }
    assert set(repo.supported_encodings) == {E.q4_1, E.q8_0, E.bfloat16, E.float16}


# -- the test server itself ----------------------------------------------------------------


def _http(url: str, method: str = "GET", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_server_speaks_resolve_like_the_hub(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "data.bin").write_bytes(bytes(range(256)) * 4)
    with HubServer() as server:
        sha = server.add_repo("acme/r", folder)
        url = f"{server.url}/acme/r/resolve/main/data.bin"
        status, headers, body = _http(url, "HEAD")
        assert status == 200 and body == b"" and headers["Content-Length"] == "1024"
        assert headers["X-Repo-Commit"] == sha and len(sha) == 40
        assert headers["ETag"].strip('"') and not any(
            h.lower().startswith("x-xet") for h in headers
        )
        status, headers, body = _http(url, headers={"Range": "bytes=1000-100000"})
        assert status == 206 and body == (bytes(range(256)) * 4)[1000:]
        assert headers["Content-Range"] == "bytes 1000-1023/1024"
        status, _, body = _http(url, headers={"Range": "bytes=-4"})
        assert status == 206 and body == bytes([252, 253, 254, 255])
        status, headers, _ = _http(url, headers={"Range": "bytes=1024-"})
        assert status == 416 and headers["Content-Range"] == "bytes */1024"
        status, headers, _ = _http(f"{server.url}/acme/r/resolve/main/nope")
        assert (status, headers["X-Error-Code"], headers["X-Repo-Commit"]) == (
            404,
            "EntryNotFound",
            sha,
        )
        status, headers, _ = _http(f"{server.url}/acme/r/resolve/v9/data.bin")
        assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
        status, headers, _ = _http(f"{server.url}/api/models/acme/none")
        assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")
        server.fail_next("/resolve/", 503, times=1)
        assert _http(url)[0] == 503 and _http(url)[0] == 200
        assert [r.status for r in server.requests_to("data.bin")][-2:] == [503, 200]


LISTING = """
import json
from huggingface_hub import HfFileSystem, list_repo_files, model_info
info = model_info("acme/tree", files_metadata=True)
fs = HfFileSystem()
print(json.dumps({
    "sha": info.sha,
    "sizes": {s.rfilename: s.size for s in info.siblings},
    "files": list_repo_files("acme/tree"),
    "glob": fs.glob("acme/tree/**/*.txt"),
    "ls": fs.ls("acme/tree/a", detail=False),
}))
"""


def test_server_paginates_and_lists_like_the_hub(tmp_path: Path) -> None:
    folder = tmp_path / "tree"
    for name in ["top.txt", "a/one.txt", "a/b/two.txt", "a/b/c/three.txt", "z.json"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    with HubServer(page_size=2) as server:
        sha = server.add_repo("acme/tree", folder)
        env = {**os.environ, **hub_subprocess_env(server, tmp_path / "home")}
        env.pop("HF_TOKEN", None)
        out = subprocess.run(
            [sys.executable, "-c", LISTING], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["sha"] == sha
        assert result["sizes"]["a/b/two.txt"] == len("a/b/two.txt")
        assert sorted(result["files"]) == sorted(
            ["top.txt", "a/one.txt", "a/b/two.txt", "a/b/c/three.txt", "z.json"]
        )
        assert sorted(result["glob"]) == sorted(
            f"acme/tree/{n}" for n in ["top.txt", "a/one.txt", "a/b/two.txt", "a/b/c/three.txt"]
        )
        assert sorted(result["ls"]) == ["acme/tree/a/b", "acme/tree/a/one.txt"]
        assert any("cursor=" in r.path for r in server.requests_to("/tree/"))


# -- online repos through huggingface_hub ------------------------------------------------


def info_requests(server: HubServer, repo_id: str) -> int:
    return len(server.requests_to(f"^/api/models/{repo_id}$"))


def test_online_repo_is_checked_once_per_process(hub: HubServer, mixed_folder: Path) -> None:
    hub.add_repo("acme/mixed", mixed_folder)
    first = HuggingFaceRepo("acme/mixed")
    second = HuggingFaceRepo("acme/mixed", trust_remote_code=True)
    assert first.repo_type is RepoType.online and str(second) == "acme/mixed"
    assert info_requests(hub, "acme/mixed") == 1
    assert first.info.sha == hub.repos["acme/mixed"].sha
    assert first.info.id == "acme/mixed"
    assert info_requests(hub, "acme/mixed") == 1


def test_online_weight_files_sizes_and_existence(hub: HubServer, mixed_folder: Path) -> None:
    hub.add_repo("acme/mixed", mixed_folder)
    repo = HuggingFaceRepo("acme/mixed")
    local = HuggingFaceRepo(str(mixed_folder))
    assert repo.weight_files == local.weight_files
    assert repo.formats_available == local.formats_available
    assert repo.file_exists("sub/extra.PTH") and not repo.file_exists("nope.bin")
    assert (
        repo.size_of("gguf/m-q4_0.gguf") == (mixed_folder / "gguf" / "m-q4_0.gguf").stat().st_size
    )
    assert repo.size_of("nope.bin") is None
    # All of it came from the one repo-info request.
    assert [r.path.split("?")[0] for r in hub.requests] == ["/api/models/acme/mixed"]


def test_online_download_and_force_download(hub: HubServer, mixed_folder: Path) -> None:
    hub.add_repo("acme/mixed", mixed_folder)
    repo = HuggingFaceRepo("acme/mixed")
    path = repo.download("sub/extra.PTH")
    assert path.read_bytes() == (mixed_folder / "sub" / "extra.PTH").read_bytes()
    assert str(path).startswith(os.environ["HF_HUB_CACHE"])
    gets = len(hub.requests_to("/resolve/main/sub/extra.PTH", "GET"))
    assert repo.download("sub/extra.PTH") == path
    assert len(hub.requests_to("/resolve/main/sub/extra.PTH", "GET")) == gets
    repo.download("sub/extra.PTH", force_download=True)
    assert len(hub.requests_to("/resolve/main/sub/extra.PTH", "GET")) == gets + 1
    with pytest.raises(FileNotFoundError, match=re.escape("no file 'nope.bin'")):
        repo.download("nope.bin")


def big_gguf(path: Path, *, vocab: int = 0, label: int | None = None) -> Path:
    """A GGUF file of several MiB of Q8_0 and F16 tensor data (named q4_0)."""
    return write_gguf(
        path,
        [
            ("blk.0.ffn.weight", GGMLQuantizationType.Q8_0, matrix(4096, 512, seed=1)),
            ("blk.0.norm", GGMLQuantizationType.F16, matrix(1024, 512, seed=2)),
        ],
        file_type=label,
        vocab=vocab,
    )


def test_remote_encoding_reads_only_the_header(hub: HubServer, tmp_path: Path) -> None:
    gguf = big_gguf(tmp_path / "repo" / "model-q4_0.gguf", label=7)  # MOSTLY_Q8_0
    hub.add_repo("acme/big", tmp_path / "repo")
    repo = HuggingFaceRepo("acme/big")
    assert repo.encoding_for_file("model-q4_0.gguf") is E.q8_0
    size = gguf.stat().st_size
    served = hub.bytes_served("/resolve/main/model-q4_0.gguf")
    assert size > 3 * quantlens.hub.FIRST_HEADER_BYTES
    assert 0 < served <= quantlens.hub.FIRST_HEADER_BYTES < size
    assert all("range" in r.headers for r in hub.requests_to("/resolve/", "GET"))
    # Nothing was downloaded into the cache.
    assert not any(Path(os.environ["HF_HUB_CACHE"]).rglob("model-q4_0.gguf"))
    assert repo.supported_encodings == [E.q8_0]
    assert repo.files_for_encoding(E.q8_0) == {WeightsFormat.gguf: [Path("model-q4_0.gguf")]}


def test_remote_gguf_header_larger_than_the_first_prefix(hub: HubServer, tmp_path: Path) -> None:
    gguf = big_gguf(tmp_path / "repo" / "vocab.gguf", vocab=40_000)
    hub.add_repo("acme/vocab", tmp_path / "repo")
    from quantlens.files import GGUFFile

    with GGUFFile(gguf) as opened:
        header = opened.data_offset
    assert header > quantlens.hub.FIRST_HEADER_BYTES
    repo = HuggingFaceRepo("acme/vocab")
    assert repo.encoding_for_file("vocab.gguf") is E.q8_0
    ranged = hub.requests_to("/resolve/main/vocab.gguf", "GET")
    assert len(ranged) >= 2
    assert header <= hub.bytes_served("/resolve/main/vocab.gguf") < gguf.stat().st_size


def test_remote_safetensors_encodings_from_headers_or_hub_counts(
    hub: HubServer, tmp_path: Path
) -> None:
    folder = tmp_path / "repo"
    write_safetensors(folder / "model-00001-of-00002.safetensors", {"n": ("float32", (256,))})
    write_safetensors(folder / "model-00002-of-00002.safetensors", {"w": ("bfloat16", (512, 512))})
    hub.add_repo("acme/counted", folder)
    hub.add_repo("acme/uncounted", folder, safetensors_info=False)
    counted = HuggingFaceRepo("acme/counted")
    assert counted.supported_encodings == [E.bfloat16, E.float32]
    assert hub.requests_to("/resolve/") == []  # the Hub's parameter counts sufficed
    uncounted = HuggingFaceRepo("acme/uncounted")
    assert uncounted.supported_encodings == [E.bfloat16, E.float32]
    assert uncounted.encoding_for_file("model-00001-of-00002.safetensors") is E.float32
    big = (folder / "model-00002-of-00002.safetensors").stat().st_size
    # One 64 KiB read holds the whole header (the Hub client itself reads 100 kB).
    assert hub.bytes_served("model-00002-of-00002") <= 64 << 10 < big


def test_remote_split_gguf_reads_every_shard_header(hub: HubServer) -> None:
    hub.add_repo("acme/facenet", corpus("gguf/generated"))
    repo = HuggingFaceRepo("acme/facenet")
    shards = ["facenet-onet-f16-00001-of-00002.gguf", "facenet-onet-f16-00002-of-00002.gguf"]
    assert repo.encoding_for_file(shards[0]) is E.float16
    assert {r.path.split("/")[-1] for r in hub.requests_to("/resolve/", "GET")} == set(shards)
    assert repo.files_for_encoding(E.float16) == {WeightsFormat.gguf: [Path(s) for s in shards]}
    local = HuggingFaceRepo(str(corpus("gguf/generated")))
    assert repo.supported_encodings == local.supported_encodings


def test_remote_pytorch_reads_the_zip_ends(hub: HubServer, tmp_path: Path) -> None:
    checkpoint = write_torch(
        tmp_path / "repo" / "pytorch_model.bin", {"w": ("bfloat16", (1536, 1024))}
    )
    hub.add_repo("acme/pt", tmp_path / "repo")
    repo = HuggingFaceRepo("acme/pt")
    assert repo.encoding_for_file("pytorch_model.bin") is E.bfloat16
    assert hub.bytes_served("pytorch_model.bin") < checkpoint.stat().st_size


def test_remote_header_failure_falls_back_to_the_name(
    hub: HubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "model-Q4_K_M.gguf").write_bytes(b"<html>not a model</html>")
    (folder / "model.gguf").write_bytes(b"<html>not a model</html>")
    hub.add_repo("acme/html", folder)
    repo = HuggingFaceRepo("acme/html")
    with caplog.at_level(logging.WARNING, logger="quantlens.hub"):
        assert repo.encoding_for_file("model-Q4_K_M.gguf") is E.q4_k
    assert "guessed from the file name" in caplog.text
    with pytest.raises(ValueError, match=re.escape("cannot tell the encoding of model.gguf")):
        repo.encoding_for_file("model.gguf")


def test_cached_files_are_read_locally(hub: HubServer, tmp_path: Path) -> None:
    big_gguf(tmp_path / "repo" / "m.gguf")
    hub.add_repo("acme/cached", tmp_path / "repo")
    HuggingFaceRepo("acme/cached").download("m.gguf")
    hub.clear_log()
    assert HuggingFaceRepo("acme/cached").encoding_for_file("m.gguf") is E.q8_0
    assert hub.requests == []


def test_gated_repo_says_how_to_get_access(
    hub: HubServer, mixed_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("acme/gated", mixed_folder, gated=True)
    repo = HuggingFaceRepo("acme/gated")  # the repo info is public
    with pytest.raises(ValueError, match="gated") as raised:
        repo.download("config.json")
    message = str(raised.value)
    assert "hf auth login" in message and "huggingface-cli login" in message
    assert "accept its terms" in message and "HF_TOKEN" in message
    assert hub.requests_to("/resolve/main/config.json")[-1].status == 401
    # The header read gives the same answer instead of guessing from the name.
    with pytest.raises(ValueError, match="gated"):
        repo.encoding_for_file("gguf/m-q4_0.gguf")
    # A token without access: 403, still gated. The token that has access: served.
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(ValueError, match="gated"):
        repo.download("config.json")
    assert hub.requests_to("/resolve/main/config.json")[-1].status == 403
    hub.tokens.add("hf_granted")
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    assert repo.download("config.json").read_text() == "{}"
    assert repo.encoding_for_file("gguf/m-q4_0.gguf") is E.q4_1


def test_token_never_leaves_the_hub_for_the_storage_host(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = big_gguf(tmp_path / "repo" / "model.gguf")
    hub.add_repo("acme/cdn", tmp_path / "repo", gated=True, cdn=True)
    hub.tokens.add("hf_granted")
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    repo = HuggingFaceRepo("acme/cdn")
    assert repo.encoding_for_file("model.gguf") is E.q8_0
    assert [r.status for r in hub.requests_to("/resolve/main/model.gguf")] == [302]
    ranged = hub.requests_to("^/cdn/acme/cdn/model.gguf$")
    assert ranged and all("authorization" not in r.headers for r in ranged)
    assert all("range" in r.headers for r in ranged)
    assert hub.bytes_served("^/cdn/") < gguf.stat().st_size
    assert repo.download("model.gguf").read_bytes() == gguf.read_bytes()


def test_missing_repo_says_check_the_spelling(hub: HubServer) -> None:
    with pytest.raises(ValueError, match="not found on the Hugging Face Hub") as raised:
        HuggingFaceRepo("acme/does-not-exist")
    assert "check the spelling" in str(raised.value)
    assert "hf auth login" in str(raised.value)


@pytest.mark.parametrize("repo_id", ["acme/bad name", "acme/double--dash", "acme/x..y", "-acme/x"])
def test_misspelled_repo_id_is_caught_before_any_request(hub: HubServer, repo_id: str) -> None:
    with pytest.raises(ValueError, match="check the spelling"):
        HuggingFaceRepo(repo_id)
    assert hub.requests == []


def test_missing_local_path_is_not_sent_to_the_hub(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="looks like a local path"):
        HuggingFaceRepo(str(tmp_path / "models" / "llama"))
    with pytest.raises(ValueError, match="looks like a local path"):
        HuggingFaceRepo("./models/llama")
    assert hub.requests == []


def test_transient_errors_are_retried(hub: HubServer, mixed_folder: Path) -> None:
    hub.add_repo("acme/flaky", mixed_folder)
    hub.fail_next("^/api/models/acme/flaky$", 503, times=2)
    repo = HuggingFaceRepo("acme/flaky")
    assert [r.status for r in hub.requests_to("^/api/models/acme/flaky$")] == [503, 503, 200]
    hub.fail_next("/resolve/main/gguf/m-q4_0.gguf", 502, times=1, method="GET")
    assert repo.encoding_for_file("gguf/m-q4_0.gguf") is E.q4_1
    hub.fail_next("/resolve/main/config.json", 503, times=1, method="HEAD")
    assert repo.download("config.json").read_text() == "{}"
    hub.fail_next("/resolve/main/model.safetensors", 500, times=1, method="GET")
    assert repo.download("model.safetensors").stat().st_size == repo.size_of("model.safetensors")
    statuses = [r.status for r in hub.requests_to("/resolve/main/config.json")]
    assert statuses[0] == 503 and statuses[-1] == 200


def test_persistent_errors_end_with_a_clear_message(
    hub: HubServer, mixed_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUANTLENS_HUB_RETRIES", "2")
    hub.add_repo("acme/down", mixed_folder)
    hub.fail_next("^/api/models/acme/down$", 503, times=100)
    with pytest.raises(ConnectionError, match=r"failed 3 times \(HTTP 503\)") as raised:
        HuggingFaceRepo("acme/down")
    assert "HF_HUB_OFFLINE" in str(raised.value)
    assert len(hub.requests_to("^/api/models/acme/down$")) == 3
    hub.add_repo("acme/mixed", mixed_folder)
    hub.fail_next("^/api/models/acme/mixed$", 404, times=1, code="RepoNotFound")
    with pytest.raises(ValueError, match="not found"):
        HuggingFaceRepo("acme/mixed")  # a 404 is not retried
    assert len(hub.requests_to("^/api/models/acme/mixed$")) == 1


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    quantlens.hub.clear_cache()


def test_offline_mode_works_from_the_cache(
    hub: HubServer, mixed_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("acme/mixed", mixed_folder)
    online = HuggingFaceRepo("acme/mixed")
    online.download("gguf/m-q4_0.gguf")
    online.download("model.safetensors")
    go_offline(monkeypatch)
    hub.clear_log()
    repo = HuggingFaceRepo("acme/mixed")
    assert repo.weight_files == {
        WeightsFormat.safetensors: ["model.safetensors"],
        WeightsFormat.gguf: ["gguf/m-q4_0.gguf"],
    }
    assert repo.download("gguf/m-q4_0.gguf").is_file()
    assert repo.encoding_for_file("gguf/m-q4_0.gguf") is E.q4_1
    assert repo.supported_encodings == [E.bfloat16, E.q4_1]
    assert repo.file_exists("model.safetensors") and not repo.file_exists("pytorch_model.bin")
    assert repo.size_of("model.safetensors") == (mixed_folder / "model.safetensors").stat().st_size
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        repo.download("pytorch_model.bin")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        repo.info  # noqa: B018
    with pytest.raises(ValueError, match="not in the local cache"):
        HuggingFaceRepo("acme/never-downloaded")
    assert hub.requests == []


OFFLINE = """
from quantlens.hub import HuggingFaceRepo
repo = HuggingFaceRepo("acme/mixed")
print(repo.encoding_for_file("gguf/m-q4_0.gguf").name, repo.download("config.json").read_text())
"""


def test_offline_subprocess_with_the_variable_set_at_import(
    hub: HubServer, mixed_folder: Path, tmp_path: Path
) -> None:
    hub.add_repo("acme/mixed", mixed_folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HF_TOKEN", None)
    run = [sys.executable, "-c", OFFLINE]
    cold = subprocess.run(run, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert cold.returncode != 0 and "not in the local cache" in cold.stderr
    repo = HuggingFaceRepo("acme/mixed")
    repo.download("gguf/m-q4_0.gguf")
    repo.download("config.json")
    hub.clear_log()
    warm = subprocess.run(run, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.split() == ["q4_1", "{}"]
    assert hub.requests == []


def test_unreachable_hub_falls_back_to_a_cached_snapshot(
    hub: HubServer, mixed_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub.add_repo("acme/mixed", mixed_folder)
    HuggingFaceRepo("acme/mixed").download("config.json")
    quantlens.hub.clear_cache()
    hub.fail_next("", 503, times=1000)
    with caplog.at_level(logging.WARNING, logger="quantlens.hub"):
        repo = HuggingFaceRepo("acme/mixed")
    assert "cannot be reached" in caplog.text
    assert repo.file_exists("config.json") and repo.weight_files == {}
    with pytest.raises(ConnectionError):
        HuggingFaceRepo("acme/other")


def test_corpus_repo_served_through_the_hub(hub: HubServer, tmp_path: Path) -> None:
    folder = tmp_path / "gpt2"
    shutil.copytree(corpus("safetensors/generated/hf-gpt2-tiny-bf16"), folder)
    hub.add_repo("acme/gpt2", folder, safetensors_info=False)
    repo = HuggingFaceRepo("acme/gpt2")
    local = HuggingFaceRepo(str(folder))
    assert repo.weight_files == local.weight_files
    assert repo.supported_encodings == local.supported_encodings == [E.bfloat16]
    assert repo.files_for_encoding(E.bfloat16) == local.files_for_encoding(E.bfloat16)
    config = repo.download("config.json")
    assert json.loads(config.read_text()) == json.loads((folder / "config.json").read_text())
