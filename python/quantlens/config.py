"""Standardized config for pipeline inference: ``PipelineConfig`` and the enums it uses.

The public names, fields, defaults and members follow ``max.pipelines.config`` (MAX 24.6).
Where MAX was weak this module does better: local model folders are first-class (relative
weight paths resolve against the folder, never the current directory), the Hub is asked
only what is needed and only once per repo, encodings come from the files' headers, a
missing GPU is a ``ValueError`` that says what exists, downloads run in parallel and honour
``force_download``, and the help texts are generated from the same field metadata that
holds the defaults.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import MISSING, dataclass, field
from enum import Enum
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantlens.config_enums import (
    KVCacheStrategy,
    PipelineEngine,
    RepoType,
    RopeType,
    SupportedEncoding,
    WeightsFormat,
    _coerce,
)
from quantlens.devices import DeviceSpec, parse_device_specs, to_torch_devices
from quantlens.weights import Weights, WeightsConverter, load_weights

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

    from quantlens.hub import HuggingFaceRepo

__all__ = [
    "DeviceSpec",
    "HuggingFaceRepo",
    "KVCacheStrategy",
    "PipelineConfig",
    "PipelineEngine",
    "RepoType",
    "RopeType",
    "SupportedEncoding",
    "WeightsFormat",
]

logger = logging.getLogger("quantlens.config")


def __getattr__(name: str) -> Any:
    # HuggingFaceRepo lives in quantlens.hub; importing it only when asked keeps
    # `import quantlens.config` light.
    if name == "HuggingFaceRepo":
        from quantlens.hub import HuggingFaceRepo

        return HuggingFaceRepo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _help(text: str) -> dict[str, str]:
    """Field metadata holding the help text; ``PipelineConfig.help`` reads it."""
    return {"help": text}


#: File suffixes of each format, compared in lower case.
_SUFFIXES: dict[str, WeightsFormat] = {
    ".gguf": WeightsFormat.gguf,
    ".safetensors": WeightsFormat.safetensors,
    ".bin": WeightsFormat.pytorch,
    ".pt": WeightsFormat.pytorch,
    ".pth": WeightsFormat.pytorch,
}

#: Where a repo lacks weights in one float encoding, the other will do (as MAX did).
_ALTERNATE = {
    SupportedEncoding.float32: SupportedEncoding.bfloat16,
    SupportedEncoding.bfloat16: SupportedEncoding.float32,
}

# A Hub repo id: "name" or "namespace/name" of letters, digits, "-", "_" and ".".
_HUB_ID = re.compile(r"^(?![.-])[\w.-]{1,96}(?:/(?![.-])[\w.-]{1,96})?$")


@dataclass
class PipelineConfig:
    """Everything a text-generation pipeline needs to know about its model and its run."""

    huggingface_repo_id: str = field(
        metadata=_help(
            "Hugging Face Hub repo id (namespace/name) or local folder of the model: its "
            "config, tokenizer and, unless weight_path says otherwise, its weights."
        )
    )
    engine: PipelineEngine | None = field(
        default=None,
        metadata=_help(
            "Engine to serve with: 'max', or 'huggingface' (transformers) as the fallback "
            "for models MAX does not cover; chosen automatically when not set."
        ),
    )
    architecture: str | None = field(
        default=None,
        metadata=_help(
            "Model architecture (a transformers class name such as LlamaForCausalLM); "
            "read from the model's config.json when not set."
        ),
    )
    weight_path: list[Path] = field(
        default_factory=list,
        metadata=_help(
            "Weight files to use; may be given several times. A relative path is a file of "
            "the repo (of the local folder, for a folder); 'namespace/name/file' names a "
            "file of another Hub repo."
        ),
    )
    device_specs: list[DeviceSpec] = field(
        default_factory=lambda: [DeviceSpec.cpu()],
        metadata=_help("Devices to run on: cpu, gpu, gpu:N or gpu:N,M."),
    )
    quantization_encoding: SupportedEncoding | None = field(
        default=None,
        metadata=_help(
            "Encoding of the weights (float32, bfloat16, q4_k, q4_0, q6_k, ...); read from "
            "the weight files when not set."
        ),
    )
    serialized_model_path: str | None = field(
        default=None, metadata=_help("Load a serialized, already compiled model from this path.")
    )
    save_to_serialized_model_path: str | None = field(
        default=None, metadata=_help("Save the compiled model to this path.")
    )
    max_length: int = field(
        default=512, metadata=_help("Longest sequence, in tokens, the model handles.")
    )
    max_new_tokens: int = field(
        default=-1,
        metadata=_help(
            "Most tokens to generate per request; -1 generates until max_length or the end token."
        ),
    )
    max_cache_batch_size: int = field(
        default=1,
        metadata=_help(
            "Most sequences the KV cache holds at once, i.e. the token-generation batch "
            "size. Kept at 1 for a local test server; raise it for serving."
        ),
    )
    max_ce_batch_size: int = field(
        default=32,
        metadata=_help(
            "Most sequences in one context-encoding batch; the smaller of this and "
            "max_cache_batch_size applies."
        ),
    )
    cache_strategy: KVCacheStrategy = field(
        default=KVCacheStrategy.CONTINUOUS,
        metadata=_help("Layout of the KV cache: naive, continuous or paged."),
    )
    max_num_steps: int = field(
        default=1, metadata=_help("Decoding steps per scheduler call (multi-step).")
    )
    pad_to_multiple_of: int = field(
        default=2, metadata=_help("Pad batched input tensors to a multiple of this many tokens.")
    )
    kv_cache_page_size: int = field(
        default=512, metadata=_help("Tokens per page of the paged KV cache.")
    )
    enable_prefix_caching: bool = field(
        default=False,
        metadata=_help("Reuse the KV cache of shared prompt prefixes (paged KV cache only)."),
    )
    gpu_memory_utilization: float = field(
        default=0.9,
        metadata=_help(
            "Fraction of device memory the process may use; the KV cache gets this "
            "fraction of the memory minus the weights."
        ),
    )
    top_k: int | None = field(
        default=None,
        metadata=_help("Sample among the k most likely tokens; greedy decoding when not set."),
    )
    trust_remote_code: bool = field(
        default=False,
        metadata=_help(
            "Allow the model's own Python code from its repo to run (only for repos you trust)."
        ),
    )
    force_download: bool = field(
        default=False,
        metadata=_help(
            "Download the weight files again even when they are already in the local cache."
        ),
    )
    enable_echo: bool = field(
        default=False,
        metadata=_help(
            "Build the model so that it can echo the prompt's tokens (and their log probabilities)."
        ),
    )
    rope_type: RopeType | None = field(
        default=None,
        metadata=_help(
            "Rotary embedding layout: none, normal or neox. Only matters for GGUF weights."
        ),
    )
    _huggingface_config: PretrainedConfig | None = field(default=None, repr=False, compare=False)
    _devices: list[torch.device] = field(default_factory=list, repr=False, compare=False)
    _weights_converter: type[WeightsConverter] | None = field(
        default=None, repr=False, compare=False
    )
    _weights_repo_id: str | None = field(default=None, repr=False, compare=False)

    # -- construction --------------------------------------------------------------------

    def __post_init__(self) -> None:
        self._repos: dict[tuple[str, bool], HuggingFaceRepo] = {}
        self._downloaded: dict[Path, Path] = {}
        # Cheap checks first: the repo check may ask the Hub.
        self._coerce_enums()
        self.device_specs = _device_specs(self.device_specs)
        self._check_numbers()
        self._repo_dir = self._check_repo_id()
        self.weight_path = self._normalise_weight_path(self.weight_path)

    def _check_repo_id(self) -> Path | None:
        """The local folder of the model, or ``None`` for a Hub repo (checked to exist)."""
        repo_id = self.huggingface_repo_id
        if not isinstance(repo_id, (str, os.PathLike)) or not os.fspath(repo_id).strip():
            raise ValueError(
                "huggingface_repo_id must be given: a Hugging Face repo id or a local folder"
            )
        self.huggingface_repo_id = repo_id = os.fspath(repo_id)
        folder = Path(repo_id).expanduser()
        if folder.is_dir():
            return folder.resolve()
        if folder.exists():
            raise ValueError(
                f"huggingface_repo_id {repo_id!r} is a file, not a model folder or Hub repo: "
                "give its folder (or a Hub id) and the file as weight_path"
            )
        if not _HUB_ID.match(repo_id) or ".." in repo_id:
            raise ValueError(
                f"huggingface_repo_id {repo_id!r} is not a local folder (none exists there) "
                "and not a valid Hugging Face repo id (namespace/name)"
            )
        self._repo(repo_id)  # raises, saying what to do, when the Hub has no such repo
        return None

    def _coerce_enums(self) -> None:
        if self.engine is not None:
            self.engine = _coerce(PipelineEngine, self.engine)
        self.cache_strategy = _coerce(KVCacheStrategy, self.cache_strategy)
        if self.rope_type is not None:
            self.rope_type = _coerce(RopeType, self.rope_type)
        if self.quantization_encoding is not None:
            self.quantization_encoding = _encoding(self.quantization_encoding)

    def _check_numbers(self) -> None:
        positive = (
            "max_length",
            "max_cache_batch_size",
            "max_ce_batch_size",
            "max_num_steps",
            "pad_to_multiple_of",
            "kv_cache_page_size",
        )
        for name in positive:
            value = _integer(name, getattr(self, name))
            if value < 1:
                raise ValueError(f"{name} must be 1 or more, not {value}")
            setattr(self, name, value)
        self.max_new_tokens = _integer("max_new_tokens", self.max_new_tokens)
        if self.max_new_tokens < -1:
            raise ValueError(
                f"max_new_tokens must be -1 (until max_length) or 0 or more, "
                f"not {self.max_new_tokens}"
            )
        if self.top_k is not None:
            self.top_k = _integer("top_k", self.top_k)
            if self.top_k < 1:
                raise ValueError(f"top_k must be 1 or more (or None for greedy), not {self.top_k}")
        utilization = self.gpu_memory_utilization
        if isinstance(utilization, bool) or not isinstance(utilization, Real):
            raise ValueError(f"gpu_memory_utilization must be a number, not {utilization!r}")
        if not (0 < utilization <= 1) or math.isnan(utilization):
            raise ValueError(
                f"gpu_memory_utilization must be a fraction in (0, 1], not {utilization}"
            )
        self.gpu_memory_utilization = float(utilization)
        for name in ("enable_prefix_caching", "trust_remote_code", "force_download", "enable_echo"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if self.enable_prefix_caching and self.cache_strategy != KVCacheStrategy.PAGED:
            raise ValueError(
                f"enable_prefix_caching needs cache_strategy=paged, not {self.cache_strategy.value}"
            )

    def _normalise_weight_path(self, given: Any) -> list[Path]:
        if given is None:
            raise ValueError("weight_path must be a list of paths; pass [] for none, not None")
        if isinstance(given, (str, os.PathLike)):
            given = [given]
        elif isinstance(given, tuple):
            given = list(given)
        elif not isinstance(given, list):
            given = [given]
        paths: list[Path] = []
        for entry in given:
            if not isinstance(entry, (str, os.PathLike)):
                raise ValueError(
                    f"weight_path entries must be str or Path, not {type(entry).__name__}: "
                    f"{entry!r}"
                )
            paths.append(self._place_weight_path(Path(os.fspath(entry))))
        return paths

    def _place_weight_path(self, path: Path) -> Path:
        """``path`` as it will be looked up: a repo-relative name, or an absolute file."""
        if str(path) in ("", "."):
            raise ValueError("weight_path entries must name files, not an empty path")
        if path.is_absolute() or str(path).startswith("~"):
            path = path.expanduser()
            if not path.is_file():
                raise ValueError(f"weight file {path} does not exist")
            return path
        folder = self._weights_dir()
        if folder is not None:
            if (folder / path).is_file():
                return path
        elif path.is_file():
            # A file next to the caller with a Hub repo for the rest (as MAX allowed):
            # made absolute so that a later chdir cannot change what it names.
            logger.info("weight file %s is a local file; the repo provides the rest", path)
            return path.resolve()
        parts = path.parts
        if len(parts) >= 3:
            repo_id, inner = "/".join(parts[:2]), Path(*parts[2:])
            if repo_id == self.huggingface_repo_id:
                return self._place_weight_path(inner)
            if self._external_file(repo_id, inner):
                return inner
        if folder is not None:
            raise ValueError(
                f"weight file {path} is not in the model folder {folder} "
                "(relative weight paths are looked up there)"
            )
        return path

    def _external_file(self, repo_id: str, inner: Path) -> bool:
        """Whether Hub repo ``repo_id`` has file ``inner``; then it becomes the weights repo."""
        if not _HUB_ID.match(repo_id) or Path(repo_id.split("/")[0]).exists():
            return False
        try:
            found = self._repo(repo_id).file_exists(inner.as_posix())
        except ValueError:
            return False
        if not found:
            return False
        if self._weights_repo_id not in (None, repo_id):
            raise ValueError(
                f"weight files come from two repos, {self._weights_repo_id} and {repo_id}; "
                "all weight files must come from one"
            )
        self._weights_repo_id = repo_id
        return True

    def __getstate__(self) -> dict[str, Any]:
        # Caches hold live objects (transformers config, devices, Hub clients): rebuilt on
        # demand after unpickling, e.g. in a worker process.
        state = dict(self.__dict__)
        state["_huggingface_config"] = None
        state["_devices"] = []
        state["_repos"] = {}
        return state

    # -- the model -----------------------------------------------------------------------

    @property
    def huggingface_config(self) -> PretrainedConfig:
        """The model's transformers config (``AutoConfig.from_pretrained``), loaded once.

        ``trust_remote_code`` is passed on. The config is returned as loaded, never changed.
        A Hub repo's ``config.json`` (and, with ``trust_remote_code``, the code it names) is
        fetched through :class:`HuggingFaceRepo`, so the endpoint, cache, offline mode and
        retries are the same as for the weights.
        """
        if self._huggingface_config is None:
            from transformers import AutoConfig

            try:
                folder = self._config_folder()
                loaded = AutoConfig.from_pretrained(
                    str(folder), trust_remote_code=self.trust_remote_code
                )
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"cannot load the transformers config of {self.huggingface_repo_id}: "
                    f"{_first_line(error)}"
                ) from error
            self._huggingface_config = loaded
        return self._huggingface_config

    def _config_folder(self) -> Path:
        """A local folder holding the model's ``config.json`` (a Hub repo's is fetched)."""
        if self._repo_dir is not None:
            return self._repo_dir
        repo = self._repo(self.huggingface_repo_id)
        try:
            config = repo.download("config.json", force_download=self.force_download)
        except FileNotFoundError as error:
            raise ValueError(f"{self.huggingface_repo_id} has no config.json") from error
        if self.trust_remote_code:
            import json

            auto_map = json.loads(config.read_text()).get("auto_map") or {}
            for reference in auto_map.values():
                for target in reference if isinstance(reference, list) else [reference]:
                    # "module.Class" is code of this repo; "other/repo--module.Class" is not.
                    if isinstance(target, str) and "--" not in target and "." in target:
                        repo.download(target.rsplit(".", 1)[0] + ".py")
        return config.parent

    def update_architecture(self) -> None:
        """Fill ``architecture`` from the config's ``architectures`` when it is not set.

        Several architectures: the first is used (with a warning). None: the engine becomes
        ``huggingface``, as MAX's registry expects.
        """
        if self.architecture is not None:
            return
        architectures = list(getattr(self.huggingface_config, "architectures", None) or [])
        if len(architectures) > 1:
            logger.warning(
                "%s lists several architectures %s; using %s",
                self.huggingface_repo_id,
                architectures,
                architectures[0],
            )
        if architectures:
            self.architecture = str(architectures[0])
        else:
            logger.warning(
                "%s names no architecture in its config; using the huggingface engine",
                self.huggingface_repo_id,
            )
            self.engine = PipelineEngine.HUGGINGFACE

    @property
    def short_name(self) -> str:
        """A short name for the model: the Hub repo id, or a local folder's name."""
        if self._repo_dir is not None:
            return self._repo_dir.name
        return self.huggingface_repo_id

    # -- encodings, formats, devices -----------------------------------------------------

    @property
    def weights_format(self) -> WeightsFormat:
        """The format of ``weight_path``'s files, from their suffixes (any case).

        ``.bin``, ``.pt`` and ``.pth`` are pytorch; the shards of a split GGUF or sharded
        safetensors model (and a ``*.index.json``) are one model of that format.
        """
        if not self.weight_path:
            raise ValueError(
                "weight_path is empty, so the weights' format cannot be told; "
                "call resolve() to pick files from the repo, or pass weight_path"
            )
        formats = {_format_of(path) for path in self.weight_path}
        if len(formats) != 1 or None in formats:
            shown = ", ".join(str(p) for p in self.weight_path)
            raise ValueError(
                f"the weights' format cannot be told from [{shown}]: every file must be "
                ".gguf, .safetensors or .bin/.pt/.pth, all of one format"
            )
        (found,) = formats
        assert found is not None
        return found

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of the weights as stored: ``quantization_encoding.dtype``."""
        if self.quantization_encoding is None:
            raise ValueError(
                "quantization_encoding is not set, so the dtype cannot be told; "
                "set it or call resolve() to read it from the weight files"
            )
        return self.quantization_encoding.dtype

    @property
    def devices(self) -> list[torch.device]:
        """The ``torch.device`` of every device spec; ``ValueError`` for a missing GPU."""
        if not self._devices:
            self._devices = to_torch_devices(self.device_specs)
        return self._devices

    @property
    def device(self) -> torch.device:
        """The first (usually only) device."""
        return self.devices[0]

    # -- repos and files -----------------------------------------------------------------

    def _repo(self, repo_id: str) -> HuggingFaceRepo:
        """One ``HuggingFaceRepo`` per repo for the life of this config."""
        key = (repo_id, self.trust_remote_code)
        repo = self._repos.get(key)
        if repo is None:
            from quantlens.hub import HuggingFaceRepo

            local = Path(repo_id).expanduser().is_dir()
            repo = HuggingFaceRepo(
                str(Path(repo_id).expanduser().resolve()) if local else repo_id,
                trust_remote_code=self.trust_remote_code,
                repo_type=RepoType.local if local else RepoType.online,
            )
            self._repos[key] = repo
        return repo

    @property
    def repo_type(self) -> RepoType:
        """``local`` when ``huggingface_repo_id`` is a folder on this machine, else ``online``."""
        return RepoType.local if self._repo_dir is not None else RepoType.online

    @property
    def weights_repo_id(self) -> str:
        """The repo the weights come from: ``_weights_repo_id``, else the model's repo."""
        return self._weights_repo_id or self.huggingface_repo_id

    def huggingface_weights_repo(self) -> HuggingFaceRepo:
        """The repo the weights come from (``_weights_repo_id``, else the model's repo),
        made once and reused."""
        return self._repo(self.weights_repo_id)

    def _weights_dir(self) -> Path | None:
        """The local folder weight names are relative to, if the weights repo is local."""
        if self._weights_repo_id is None:
            return self._repo_dir
        folder = Path(self._weights_repo_id).expanduser()
        return folder.resolve() if folder.is_dir() else None

    def _given_file(self, path: Path) -> Path | None:
        """Where ``path`` is on this machine without downloading anything, if it is."""
        if path.is_absolute():
            return path
        folder = self._weights_dir()
        if folder is not None and (folder / path).is_file():
            return folder / path
        return None

    def local_weight_paths(self) -> list[Path]:
        """Where every ``weight_path`` file is on this machine (downloading what is not)."""
        if any(self._given_file(p) is None and p not in self._downloaded for p in self.weight_path):
            self.download_weights()
        return [self._given_file(p) or self._downloaded[p] for p in self.weight_path]

    def download_weights(self) -> None:
        """Fetch the weight files that are not on this machine, in parallel, with
        huggingface_hub's progress bars, into its cache.

        ``force_download`` fetches them again even when cached. Local files (of a local
        folder, or absolute paths) are used where they are. ``weight_path`` is left as
        given; :meth:`local_weight_paths` says where the files are.
        """
        if not self.weight_path:
            self.resolve()
        remote = [p for p in self.weight_path if self._given_file(p) is None]
        if not remote:
            logger.info("all weight files are local; nothing to download")
            return
        repo = self.huggingface_weights_repo()

        def fetch(path: Path) -> Path:
            return Path(repo.download(path.as_posix(), force_download=self.force_download))

        started = time.monotonic()
        logger.info("downloading %d weight files from %s", len(remote), repo)
        with ThreadPoolExecutor(max_workers=min(8, len(remote))) as pool:
            fetched = list(pool.map(fetch, remote))
        self._downloaded.update(zip(remote, fetched, strict=True))
        logger.info("weights ready in %.1f s", time.monotonic() - started)

    def weight_file_sizes(self) -> list[tuple[Path, int | None]]:
        """``(path, bytes)`` of every weight file, ``None`` where the Hub does not say."""
        sizes: list[tuple[Path, int | None]] = []
        for path in self.weight_path:
            local = self._given_file(path) or self._downloaded.get(path)
            if local is not None:
                sizes.append((path, local.stat().st_size))
            else:
                sizes.append((path, self.huggingface_weights_repo().size_of(path.as_posix())))
        return sizes

    def weights_size(self) -> int | None:
        """Bytes in all weight files, or ``None`` if a remote file's size is unknown."""
        if not self.weight_path:
            self.resolve()
        total = 0
        for _, size in self.weight_file_sizes():
            if size is None:
                return None
            total += size
        return total

    def resolve(self) -> PipelineConfig:
        """Fill in what was left open, reading the repo and the files' headers:
        ``architecture`` (when the repo has a config), ``quantization_encoding`` and, when
        empty, ``weight_path`` (the dominant encoding's files, float32 and bfloat16
        standing in for each other). An encoding that contradicts the files is a
        ``ValueError``. Returns the config.
        """
        if self.architecture is None:
            try:
                self.update_architecture()
            except ValueError as error:
                logger.info("architecture left unset: %s", error)
        if self.weight_path:
            self._check_encoding()
        else:
            self._choose_weight_files()
        return self

    def _encoding_of(self, paths: list[Path]) -> SupportedEncoding:
        """The dominant encoding of one model's files, read from their headers.

        Local shards of safetensors or PyTorch models are weighed together; a GGUF model
        opens whole from its first file; a remote model's headers are read by the repo.
        """
        from quantlens.encoding import file_encodings, rank_totals

        found = [self._given_file(p) or self._downloaded.get(p) for p in paths]
        local = [p for p in found if p is not None]
        if len(local) < len(found):
            return self.huggingface_weights_repo().encoding_for_file(paths[0].as_posix())
        # An index names the shards that are listed too: weigh the shards themselves.
        files = [p for p in local if not p.name.lower().endswith(".json")] or local
        if _format_of(files[0]) is WeightsFormat.gguf:
            files = files[:1]
        models = [file_encodings(f) for f in files]
        if len(models) == 1 and models[0].primary is not None:
            return models[0].primary
        ranked = rank_totals((s.encoding, s.weight) for m in models for s in m.shares)
        if not ranked:
            raise ValueError(f"{files[0]} holds no tensors in an encoding weights are stored in")
        return ranked[0]

    def _check_encoding(self) -> None:
        found = self._encoding_of(self.weight_path)
        if self.quantization_encoding is None:
            self.quantization_encoding = found
        elif found != self.quantization_encoding:
            raise ValueError(
                f"quantization_encoding is {self.quantization_encoding} but weight file "
                f"{self.weight_path[0]} holds {found} weights; leave quantization_encoding "
                "unset or pick files of that encoding"
            )

    def _choose_weight_files(self) -> None:
        repo = self.huggingface_weights_repo()
        encoding = self.quantization_encoding
        if encoding is None:
            supported = repo.supported_encodings
            if not supported:
                raise ValueError(
                    f"{repo.repo_id} has no weight files quantlens can tell the encoding of"
                )
            encoding = supported[0]
        files = repo.files_for_encoding(encoding, alternate_encoding=_ALTERNATE.get(encoding))
        chosen = next((paths for paths in files.values() if paths), None)
        if not chosen:
            available = ", ".join(str(e) for e in repo.supported_encodings) or "none"
            raise ValueError(
                f"{repo.repo_id} has no {encoding} weight files (encodings it has: {available})"
            )
        if _format_of(chosen[0]) is WeightsFormat.gguf:
            from quantlens.hub import model_files

            # Several GGUF models may share an encoding (e.g. two copies): take the first,
            # with all of its shards.
            models = model_files(p.as_posix() for p in chosen)
            if len(models) > 1:
                logger.info(
                    "%s has %d %s GGUF models; using %s", repo, len(models), encoding, models[0][0]
                )
            chosen = [Path(p) for p in models[0]]
        self.weight_path = [Path(p) for p in chosen]
        self.quantization_encoding = self._encoding_of(self.weight_path)

    def load_weights(self) -> Weights:
        """The weights as a :class:`~quantlens.weights.Weights` tree, downloading what is
        needed first (and resolving ``weight_path`` when it is empty).

        A ``_weights_converter`` gets the local paths and ``config=self``; otherwise GGUF
        (one file or split), safetensors (one file or shards) and PyTorch files load as is.
        """
        if not self.weight_path:
            self.resolve()
        paths = self.local_weight_paths()
        if self._weights_converter is not None:
            return self._weights_converter.load_weights(paths, config=self)
        _ = self.weights_format  # raises for mixed or unknown formats
        return load_weights(paths)

    # -- help ----------------------------------------------------------------------------

    @staticmethod
    def help() -> dict[str, str]:
        """Field name -> help text (with its default) for every public field."""
        return {
            f.name: f"{f.metadata['help']} ({_describe_default(f)})"
            for f in dataclasses.fields(PipelineConfig)
            if not f.name.startswith("_")
        }


def _describe_default(f: dataclasses.Field[Any]) -> str:
    if f.default is not MISSING:
        value: Any = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:
        return "required"
    if value is None:
        return "default: not set"
    if isinstance(value, Enum):
        return f"default: {value.value}"
    if isinstance(value, bool):
        return f"default: {str(value).lower()}"
    if isinstance(value, list):
        return "default: " + (",".join(str(v) for v in value) or "none")
    return f"default: {value}"


def _format_of(path: Path) -> WeightsFormat | None:
    name = path.name.lower()
    if name.endswith(".index.json"):
        name = name.removesuffix(".index.json")
    return _SUFFIXES.get(Path(name).suffix)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    return int(value)


def _encoding(value: Any) -> SupportedEncoding:
    """An encoding from a member, its name or value, or a llama.cpp label (``Q4_K_M``)."""
    try:
        result: SupportedEncoding = _coerce(SupportedEncoding, value)
        return result
    except ValueError:
        parsed = (
            SupportedEncoding.parse_from_file_name(str(value)) if isinstance(value, str) else None
        )
        if parsed is None:
            raise
        return parsed


def _device_specs(given: Any) -> list[DeviceSpec]:
    """``device_specs`` as a list of specs (strings like ``gpu:0`` accepted)."""
    items = [given] if isinstance(given, (DeviceSpec, str)) else given
    if items is None or not isinstance(items, (list, tuple)):
        raise ValueError(f"device_specs must be a list of DeviceSpec, not {given!r}")
    specs: list[DeviceSpec] = []
    for item in items:
        if isinstance(item, DeviceSpec):
            specs.append(item)
        elif isinstance(item, str):
            specs.extend(parse_device_specs(item))
        else:
            raise ValueError(f"device_specs entries must be DeviceSpec, not {item!r}")
    if not specs:
        raise ValueError("device_specs is empty: give at least one device (DeviceSpec.cpu())")
    return specs


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
