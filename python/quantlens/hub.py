"""``HuggingFaceRepo``: a model repository on the Hugging Face Hub or in a local folder.

It says which weight files a repository has, which encodings they are stored in (read
from the files' headers: over HTTP range requests for files not yet downloaded), and
fetches files. The Hub is asked only what is needed: one repository-info request per
repository and process (it also lists every file with its size), then header bytes or
downloads on demand. ``HF_HUB_OFFLINE=1`` works from the local cache, transient Hub errors
are retried with backoff (``QUANTLENS_HUB_RETRIES``, ``QUANTLENS_HUB_BACKOFF`` seconds), and
gated, missing and misspelled repositories raise a ``ValueError`` that says what to do.

The endpoint (``HF_ENDPOINT``), the cache (``HF_HUB_CACHE``/``HF_HOME``) and offline mode
are read when they are used, not when ``huggingface_hub`` was imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from quantlens.config_enums import RepoType, SupportedEncoding, WeightsFormat, _coerce
from quantlens.encoding import (
    ModelEncodings,
    file_encodings,
    rank_encodings,
    rank_totals,
    weight_file_encodings,
)
from quantlens.exceptions import QuantlensError
from quantlens.files import GGUFFile, open_weights

if TYPE_CHECKING:
    from huggingface_hub.hf_api import ModelInfo

__all__ = ["HuggingFaceRepo", "clear_cache", "model_files", "weight_files_of"]

logger = logging.getLogger("quantlens.hub")

_T = TypeVar("_T")

# ---------------------------------------------------------------------------------------
# Which files are weights
# ---------------------------------------------------------------------------------------

_SUFFIX_FORMATS = {
    ".safetensors": WeightsFormat.safetensors,
    ".gguf": WeightsFormat.gguf,
    ".bin": WeightsFormat.pytorch,
    ".pt": WeightsFormat.pytorch,
    ".pth": WeightsFormat.pytorch,
}

# The order MAX listed formats in: safetensors, then GGUF, then PyTorch.
_FORMAT_ORDER = (WeightsFormat.safetensors, WeightsFormat.gguf, WeightsFormat.pytorch)

# Files that trainers save next to checkpoints with weight-file suffixes but that hold
# no model weights (transformers' Trainer, accelerate, PyTorch Lightning).
_NOT_WEIGHTS = re.compile(
    r"^(?:training_args|optimizer|scheduler|scaler|trainer_state|rng_state(?:_\d+)?"
    r"|random_states(?:_\d+)?)\.(?:bin|pt|pth)$",
    re.IGNORECASE,
)

_SPLIT_GGUF = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.I)


def weight_files_of(names: Iterable[str]) -> dict[WeightsFormat, list[str]]:
    """Group repo-relative file names by weight format, each list sorted.

    Suffixes count case-insensitively; ``.bin``, ``.pt`` and ``.pth`` are PyTorch unless
    the name is one of the trainer's non-weight files (``training_args.bin``,
    ``optimizer.pt``, ``scheduler.pt``, ``scaler.pt``, ``rng_state*.pth``, ...).
    ``consolidated*.safetensors`` is dropped when other safetensors files exist (Mistral
    repos ship the same weights twice). Formats without files are left out.
    """
    found: dict[WeightsFormat, list[str]] = {}
    for name in names:
        path = PurePosixPath(name)
        weights_format = _SUFFIX_FORMATS.get(path.suffix.lower())
        if weights_format is None:
            continue
        if weights_format is WeightsFormat.pytorch and _NOT_WEIGHTS.match(path.name):
            continue
        found.setdefault(weights_format, []).append(name)
    safetensors = found.get(WeightsFormat.safetensors, [])
    others = [n for n in safetensors if not _is_consolidated(n)]
    if others and len(others) < len(safetensors):
        found[WeightsFormat.safetensors] = others
    return {f: sorted(found[f]) for f in _FORMAT_ORDER if f in found}


def _is_consolidated(name: str) -> bool:
    return PurePosixPath(name).name.lower().startswith("consolidated")


def model_files(names: Iterable[str]) -> list[tuple[str, ...]]:
    """Group weight files into models: every shard of a split GGUF model
    (``NAME-00001-of-00003.gguf``) together, in shard order; any other file alone."""
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    singles: list[tuple[str, ...]] = []
    for name in sorted(names):
        match = _SPLIT_GGUF.match(name)
        if match is None:
            singles.append((name,))
            continue
        key = (match["stem"], match["count"])
        groups.setdefault(key, []).append((int(match["index"]), name))
    models = singles + [tuple(n for _, n in sorted(shards)) for shards in groups.values()]
    return sorted(models)


# ---------------------------------------------------------------------------------------
# Talking to the Hub: settings read at call time, retries, error messages
# ---------------------------------------------------------------------------------------

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

# Repository info per (endpoint, repo id), fetched once per process.
_INFO_CACHE: dict[tuple[str, str], ModelInfo] = {}


def clear_cache() -> None:
    """Forget the repository information fetched so far in this process."""
    _INFO_CACHE.clear()


def _endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _cache_dir() -> str:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def _offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.is_offline_mode() or any(
        (flag or "").strip().lower() in ("1", "true", "yes", "on") for flag in flags
    )


def _retry_settings() -> tuple[int, float]:
    retries = int(os.environ.get("QUANTLENS_HUB_RETRIES", "4"))
    backoff = float(os.environ.get("QUANTLENS_HUB_BACKOFF", "0.5"))
    return max(retries, 0), max(backoff, 0.0)


def _transient_status(exc: BaseException, *, after_retries: bool = False) -> str | None:
    """Why ``exc`` (or what caused it) is worth retrying: an HTTP status or a network
    failure; ``None`` when it is not.

    A download that found nothing in the cache has already retried on its own, so its
    failure counts only with ``after_retries`` (to word the final message)."""
    import httpx2
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OfflineModeIsEnabled):
            return None
        if isinstance(seen, LocalEntryNotFoundError) and not after_retries:
            return None
        if isinstance(seen, HfHubHTTPError) and seen.response is not None:
            status = seen.response.status_code
            return f"HTTP {status}" if status in _RETRY_STATUS else None
        if isinstance(seen, httpx2.TransportError):
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


def _unreachable(reason: str, what: str, tries: int | None) -> ConnectionError:
    times = "" if tries is None else f" {tries} times"
    return ConnectionError(
        f"the Hugging Face Hub at {_endpoint()} failed{times} ({reason}) while {what}; try "
        "again later, or set HF_HUB_OFFLINE=1 to work from the local cache"
    )


def _with_retries(call: Callable[[], _T], what: str) -> _T:
    """``call()``, retried with exponential backoff while the Hub fails transiently."""
    retries, backoff = _retry_settings()
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            reason = _transient_status(exc)
            if reason is None:
                raise
            if attempt == retries:
                raise _unreachable(reason, what, attempt + 1) from exc
            delay = min(backoff * 2**attempt, 8.0)
            logger.info("%s: %s, retrying in %.2f s", what, reason, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class _RepoAccessError(ValueError):
    """The repository itself cannot be used (gated, missing, misspelled, disabled)."""


@contextlib.contextmanager
def _hub_errors(repo_id: str, filename: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's errors about a repository into messages that say what to do."""
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{_endpoint()}/{repo_id}"
    try:
        yield
    except GatedRepoError as exc:  # a subclass of RepositoryNotFoundError: first
        raise _RepoAccessError(
            f"{repo_id} is a gated repository: accept its terms at {where} and log in with "
            "`hf auth login` (formerly `huggingface-cli login`) or set HF_TOKEN to a token "
            "of that account"
        ) from exc
    except RevisionNotFoundError as exc:
        raise _RepoAccessError(f"{repo_id} has no such revision on {_endpoint()}: {exc}") from exc
    except RepositoryNotFoundError as exc:
        raise _RepoAccessError(
            f"{repo_id} is not a local folder and was not found on the Hugging Face Hub "
            f"({_endpoint()}): check the spelling of the repo id (namespace/name); if the "
            "repository is private, log in with `hf auth login` or set HF_TOKEN"
        ) from exc
    except DisabledRepoError as exc:
        raise _RepoAccessError(f"{repo_id} has been disabled on the Hub ({where})") from exc
    except RemoteEntryNotFoundError as exc:
        raise FileNotFoundError(f"{repo_id} has no file {filename!r} ({where})") from exc
    except LocalEntryNotFoundError as exc:
        if _offline():
            raise FileNotFoundError(
                f"{filename!r} of {repo_id} is not in the local cache ({_cache_dir()}) and "
                "HF_HUB_OFFLINE is set: download it once while online"
            ) from exc
        reason = _transient_status(exc, after_retries=True)
        if reason is not None:
            raise _unreachable(reason, f"downloading {filename}", None) from exc
        raise
    except HFValidationError as exc:
        raise _RepoAccessError(
            f"{repo_id!r} is neither an existing local folder nor a valid Hub repo id "
            f"(namespace/name of letters, digits, '-', '_', '.'): check the spelling ({exc})"
        ) from exc


def _looks_like_path(repo_id: str) -> bool:
    return (
        repo_id.startswith(("/", "./", "../", "~", "\\"))
        or repo_id.count("/") > 1
        or (os.sep != "/" and os.sep in repo_id)
    )


# ---------------------------------------------------------------------------------------
# Reading headers of remote files with HTTP range requests
# ---------------------------------------------------------------------------------------

#: First prefix of a GGUF file fetched to parse its header; grown 4x until it parses.
FIRST_HEADER_BYTES = 1 << 20
#: Largest header quantlens fetches before it gives up on a remote file.
MAX_HEADER_BYTES = 256 << 20


@dataclass
class _RemotePart:
    """One remote file mirrored into a sparse local file, holding only fetched bytes."""

    name: str
    url: str
    size: int
    local: Path
    head: int = 0  # bytes [0, head) are fetched
    tail: int = 0  # bytes [size - tail, size) are fetched

    def fetch_head(self, want: int) -> None:
        want = min(want, self.size)
        if want > self.head:
            self._write(self.head, _read_range(self.url, self.head, want - 1))
            self.head = want

    def fetch_tail(self, want: int) -> None:
        want = min(want, self.size - self.head)
        if want > self.tail:
            start = self.size - want
            self._write(start, _read_range(self.url, start, self.size - self.tail - 1))
            self.tail = want

    def _write(self, offset: int, data: bytes) -> None:
        with open(self.local, "r+b") as out:
            out.seek(offset)
            out.write(data)


def _read_range(url: str, start: int, end: int) -> bytes:
    """Bytes ``start..=end`` of ``url``, through huggingface_hub's HTTP session."""
    from huggingface_hub import get_session, hf_raise_for_status
    from huggingface_hub.utils._headers import build_hf_headers

    want = end - start + 1
    # The token goes to the Hub only, never to the storage host a file redirects to.
    same_origin = _origin(url) == _origin(_endpoint())

    def get() -> bytes:
        base = (
            build_hf_headers() if same_origin else {"user-agent": build_hf_headers()["user-agent"]}
        )
        headers = {**base, "Range": f"bytes={start}-{end}"}
        with get_session().stream("GET", url, headers=headers, follow_redirects=True) as reply:
            if reply.status_code >= 400:
                reply.read()
                hf_raise_for_status(reply)
            # A server that ignores Range answers 200 with the whole file: skip ahead.
            skip = start if reply.status_code == 200 else 0
            chunks: list[bytes] = []
            got = 0
            for chunk in reply.iter_bytes():
                chunks.append(chunk)
                got += len(chunk)
                if got >= skip + want:
                    break
        data = b"".join(chunks)[skip : skip + want]
        if len(data) != want:
            raise ValueError(f"{url}: asked for {want} bytes at {start}, got {len(data)}")
        return data

    return _with_retries(get, f"reading bytes {start}-{end} of {url}")


def _origin(url: str) -> tuple[str, str]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _header_complete(weights: Any, parts: list[_RemotePart]) -> bool:
    """Whether everything ``weights`` parsed came from fetched bytes, not sparse zeros."""
    if not isinstance(weights, GGUFFile):
        return True
    if weights.data_offset > parts[0].head:
        return False
    # A later shard's header ends before its first tensor's data.
    first_data: dict[int, int] = {}
    for tensor in weights.tensors:
        first_data[tensor.shard] = min(first_data.get(tensor.shard, tensor.offset), tensor.offset)
    for index, part in enumerate(parts[1:], start=1):
        end = first_data.get(index, part.size)
        if end > part.head:
            return False
    return True


def _remote_encodings(parts: list[_RemotePart], kind: WeightsFormat) -> ModelEncodings:
    """Fetch growing prefixes of ``parts`` (one model) until their headers parse."""
    want = FIRST_HEADER_BYTES
    if kind is WeightsFormat.safetensors:
        # An 8-byte length, then that much JSON: the header's size is known at once.
        part = parts[0]
        part.fetch_head(min(64 << 10, part.size))
        with open(part.local, "rb") as sparse:
            length = int.from_bytes(sparse.read(8), "little")
        want = min(8 + length, MAX_HEADER_BYTES)
    failure: Exception | None = None
    while True:
        for part in parts:
            part.fetch_head(want)
            if kind is WeightsFormat.pytorch:
                # A zip checkpoint keeps its directory at the end.
                part.fetch_tail(want)
        try:
            with open_weights(parts[0].local) as weights:
                if _header_complete(weights, parts):
                    return weight_file_encodings(weights)
        except (QuantlensError, OSError) as exc:
            failure = exc
        everything = all(p.head + p.tail >= p.size for p in parts)
        if everything or want >= MAX_HEADER_BYTES:
            raise ValueError(
                f"{parts[0].name}: no readable header in the first {want} bytes ({failure})"
            )
        want = min(want * 4, MAX_HEADER_BYTES)


# ---------------------------------------------------------------------------------------
# The repository
# ---------------------------------------------------------------------------------------


@dataclass
class HuggingFaceRepo:
    """A model repository: a Hub repo id (``namespace/name``) or a local folder.

    ``repo_type`` ``None`` means local when ``repo_id`` exists on disk, else online. An
    online repo is checked to exist when it is made (one request per repo and process;
    none when offline, where the local cache must hold it).
    """

    repo_id: str
    trust_remote_code: bool = False
    repo_type: RepoType | None = None
    _root: Path | None = field(default=None, init=False, repr=False, compare=False)
    _cache_only: bool = field(default=False, init=False, repr=False, compare=False)
    _encodings: dict[tuple[str, ...], ModelEncodings | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.repo_id:
            raise ValueError("a repo id (namespace/name) or a local folder must be given")
        if self.repo_type is None:
            exists = os.path.exists(self.repo_id)
            self.repo_type = RepoType.local if exists else RepoType.online
        else:
            self.repo_type = _coerce(RepoType, self.repo_type)
        if self.repo_type is RepoType.local:
            root = Path(self.repo_id).expanduser()
            if not root.is_dir():
                what = "is a file, not a folder" if root.exists() else "does not exist"
                raise ValueError(f"local repository folder {self.repo_id} {what}")
            self._root = root.absolute()
        elif self.repo_type is RepoType.online:
            if _looks_like_path(self.repo_id):
                raise ValueError(
                    f"{self.repo_id} looks like a local path but no such folder exists; a Hub "
                    "repo id is namespace/name"
                )
            self._check_exists()
        else:
            raise ValueError(f"unsupported repo type {self.repo_type!r}")

    def __str__(self) -> str:
        return self.repo_id

    def __repr__(self) -> str:
        return self.repo_id

    # -- the Hub --------------------------------------------------------------------------

    @property
    def _local(self) -> bool:
        return self.repo_type is RepoType.local

    def _check_exists(self) -> None:
        if _offline():
            if self._snapshot() is None:
                raise ValueError(
                    f"{self.repo_id} is not in the local cache ({_cache_dir()}) and "
                    "HF_HUB_OFFLINE is set: download it once while online, or unset "
                    "HF_HUB_OFFLINE"
                )
            self._cache_only = True
            return
        try:
            self._model_info()
        except ConnectionError:
            if self._snapshot() is None:
                raise
            logger.warning("the Hub cannot be reached; using the cached copy of %s", self)
            self._cache_only = True

    def _model_info(self) -> ModelInfo:
        from huggingface_hub import HfApi

        key = (_endpoint(), self.repo_id)
        info = _INFO_CACHE.get(key)
        if info is None:
            api = HfApi(endpoint=key[0])
            with _hub_errors(self.repo_id):
                info = _with_retries(
                    lambda: api.model_info(self.repo_id, files_metadata=True),
                    f"looking up {self.repo_id}",
                )
            _INFO_CACHE[key] = info
        return info

    def _snapshot(self) -> Path | None:
        """The cached snapshot of the repo's main revision, if there is one."""
        from huggingface_hub.file_download import repo_folder_name

        folder = Path(_cache_dir()) / repo_folder_name(repo_id=self.repo_id, repo_type="model")
        try:
            commit = (folder / "refs" / "main").read_text().strip()
        except OSError:
            return None
        snapshot = folder / "snapshots" / commit
        return snapshot if snapshot.is_dir() else None

    def _cached(self, filename: str) -> Path | None:
        """``filename`` in the local cache (main revision), if it was downloaded."""
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(self.repo_id, filename, cache_dir=_cache_dir())
        return Path(found) if isinstance(found, str) else None

    @property
    def _may_ask_hub(self) -> bool:
        """Whether the Hub may be asked (online, not offline, reachable)."""
        return self._root is None and not self._cache_only and not _offline()

    # -- documented members ---------------------------------------------------------------

    @cached_property
    def info(self) -> ModelInfo:
        """The Hub's ``ModelInfo`` of the repository (with file sizes)."""
        if self._local:
            raise ValueError(f"{self.repo_id} is a local folder: model info exists only on the Hub")
        if not self._may_ask_hub:
            raise ValueError(
                f"model info of {self.repo_id} needs the Hub, but HF_HUB_OFFLINE is set "
                "(or the Hub cannot be reached)"
            )
        return self._model_info()

    def _all_files(self) -> list[str]:
        if self._root is not None:
            return _walk(self._root)
        if not self._may_ask_hub:
            snapshot = self._snapshot()
            return _walk(snapshot) if snapshot is not None else []
        return [sibling.rfilename for sibling in self._model_info().siblings or []]

    @cached_property
    def weight_files(self) -> dict[WeightsFormat, list[str]]:
        """Weight files by format: repo-relative POSIX names, every folder, sorted.

        Offline, only files present in the local cache are listed.
        """
        return weight_files_of(self._all_files())

    @property
    def formats_available(self) -> list[WeightsFormat]:
        """The weight formats the repository has files in."""
        return list(self.weight_files)

    def file_exists(self, filename: str) -> bool:
        """Whether the repository has ``filename`` (offline: whether it is cached)."""
        if self._root is not None:
            return (self._root / filename).is_file()
        if not self._may_ask_hub:
            return self._cached(filename) is not None
        return filename in {s.rfilename for s in self._model_info().siblings or []}

    def size_of(self, filename: str) -> int | None:
        """Size of ``filename`` in bytes; ``None`` when it does not exist."""
        if self._root is not None:
            path = self._root / filename
            return path.stat().st_size if path.is_file() else None
        if not self._may_ask_hub:
            cached = self._cached(filename)
            return cached.stat().st_size if cached is not None else None
        for sibling in self._model_info().siblings or []:
            if sibling.rfilename == filename and sibling.size is not None:
                return sibling.size
        if filename not in {s.rfilename for s in self._model_info().siblings or []}:
            return None
        return self._remote_size(filename)

    def _remote_size(self, filename: str) -> int | None:
        try:
            return self._locate(filename)[1]
        except FileNotFoundError:
            return None

    def download(self, filename: str, force_download: bool = False) -> Path:
        """A local path to ``filename``: the file itself for a local repository, else the
        cached download (``force_download`` fetches it again)."""
        if self._root is not None:
            path = self._root / filename
            if not path.is_file():
                raise FileNotFoundError(f"{self.repo_id} has no file {filename!r}")
            return path
        from huggingface_hub import hf_hub_download

        offline = not self._may_ask_hub
        with _hub_errors(self.repo_id, filename):
            found = _with_retries(
                lambda: hf_hub_download(
                    self.repo_id,
                    filename,
                    endpoint=_endpoint(),
                    cache_dir=_cache_dir(),
                    force_download=force_download,
                    local_files_only=offline,
                ),
                f"downloading {filename} of {self.repo_id}",
            )
        return Path(str(found))

    # -- encodings --------------------------------------------------------------------------

    def _model_of(self, name: str) -> tuple[str, ...]:
        """Every file of the model ``name`` belongs to (all shards of a split GGUF)."""
        if _SPLIT_GGUF.match(name):
            for model in model_files(self.weight_files.get(WeightsFormat.gguf, [])):
                if name in model:
                    return model
        return (name,)

    def _model_encodings(self, files: tuple[str, ...]) -> ModelEncodings | None:
        """The encodings of one model's files, from their headers; ``None`` when a remote
        header cannot be read. Local files that cannot be read raise ``ValueError``."""
        if files in self._encodings:
            return self._encodings[files]
        result: ModelEncodings | None
        local = self._local_copy(files)
        if local is not None:
            try:
                result = file_encodings(local)
            except QuantlensError as exc:
                raise ValueError(f"cannot tell the encoding of {local}: {exc}") from exc
        elif not self._may_ask_hub:
            result = None
        else:
            try:
                result = self._read_remote_headers(files)
            except _RepoAccessError:
                raise
            except (ValueError, OSError) as exc:
                logger.warning("cannot read the header of %s in %s: %s", files[0], self, exc)
                result = None
        self._encodings[files] = result
        return result

    def _local_copy(self, files: tuple[str, ...]) -> Path | None:
        """A local path to the model's first file, when every file of it is local."""
        if self._root is not None:
            paths = [self._root / f for f in files]
        else:
            found = [self._cached(f) for f in files]
            if any(p is None for p in found):
                return None
            paths = [p for p in found if p is not None]
        if not all(p.is_file() for p in paths):
            missing = next(p for p in paths if not p.is_file())
            raise FileNotFoundError(f"{self.repo_id} has no file {missing}")
        return paths[0]

    def _locate(self, filename: str) -> tuple[str, int]:
        """Where ``filename``'s bytes are served and how many there are (one HEAD)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(self.repo_id, filename, endpoint=_endpoint())
        with _hub_errors(self.repo_id, filename):
            meta = _with_retries(
                lambda: get_hf_file_metadata(url, endpoint=_endpoint()),
                f"locating {filename} in {self.repo_id}",
            )
        if meta.size is None:
            raise ValueError(f"the Hub did not say how big {filename} is")
        return meta.location, meta.size

    def _read_remote_headers(self, files: tuple[str, ...]) -> ModelEncodings:
        kind = _SUFFIX_FORMATS.get(PurePosixPath(files[0]).suffix.lower())
        if kind is None:
            raise ValueError(f"{files[0]} is not a weight file")
        with tempfile.TemporaryDirectory(prefix="quantlens-header-") as tmp:
            parts = []
            for name in files:
                location, size = self._locate(name)
                local = Path(tmp) / PurePosixPath(name).name
                with open(local, "wb") as sparse:
                    sparse.truncate(size)
                parts.append(_RemotePart(name, location, size, local))
            with _hub_errors(self.repo_id, files[0]):
                return _remote_encodings(parts, kind)

    def _encoding_from_config(self) -> SupportedEncoding | None:
        """The ``dtype``/``torch_dtype`` of the repo's ``config.json``, if it says."""
        import json

        try:
            path = self.download("config.json")
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        value = config.get("torch_dtype") or config.get("dtype")
        return SupportedEncoding.from_dtype_name(value) if isinstance(value, str) else None

    def encoding_for_file(self, file: str | Path) -> SupportedEncoding:
        """The encoding ``file`` is stored in, read from its header.

        GGUF: tensor types weighted by bytes, led by ``general.file_type`` when tensors hold
        it (a split model counts all shards); safetensors and PyTorch: dtypes weighted by
        parameters. ``file`` is repo-relative (or any absolute path). A remote file that is
        not cached has only its header fetched, with range requests; only when that fails
        is the file name taken as a hint.
        """
        path = Path(file)
        if path.is_absolute() and path.is_file():
            return _primary(file_encodings(path), str(path))
        name = path.as_posix()
        encodings = self._model_encodings(self._model_of(name))
        if encodings is not None:
            return _primary(encodings, name)
        hint = SupportedEncoding.parse_from_file_name(name)
        if hint is None and _SUFFIX_FORMATS.get(path.suffix.lower()) is WeightsFormat.pytorch:
            hint = self._encoding_from_config()
        if hint is None:
            raise ValueError(
                f"cannot tell the encoding of {name} in {self.repo_id}: its header could not "
                "be read and its name names no encoding"
            )
        logger.warning("%s: encoding %s guessed from the file name, not its header", name, hint)
        return hint

    def _format_encodings(self, weights_format: WeightsFormat) -> list[SupportedEncoding]:
        """Encodings of the repo's safetensors or PyTorch files, heaviest first."""
        return rank_totals(self._format_totals(weights_format))

    def _format_totals(self, weights_format: WeightsFormat) -> list[tuple[SupportedEncoding, int]]:
        files = self.weight_files.get(weights_format, [])
        if not files:
            return []
        if weights_format is WeightsFormat.safetensors and self._may_ask_hub:
            # The Hub counts parameters per dtype over every shard.
            parameters = getattr(self._model_info().safetensors, "parameters", None)
            if parameters:
                counts = [(dtype, count, count) for dtype, count in parameters.items()]
                return [(s.encoding, s.weight) for s in rank_encodings(counts, "elements")]
        totals: list[tuple[SupportedEncoding, int]] = []
        for name in files:
            try:
                encodings = self._model_encodings((name,))
            except (ValueError, OSError) as exc:
                logger.warning("%s: %s", name, exc)
                continue
            if encodings is not None:
                totals.extend((s.encoding, s.weight) for s in encodings.shares)
                continue
            hint = SupportedEncoding.parse_from_file_name(name)
            if hint is None and weights_format is WeightsFormat.pytorch:
                hint = self._encoding_from_config()
            if hint is not None:
                totals.append((hint, 0))
        return totals

    def _gguf_totals(self) -> list[tuple[tuple[str, ...], SupportedEncoding, int]]:
        """Each GGUF model with its encoding and parameter count."""
        found = []
        for model in model_files(self.weight_files.get(WeightsFormat.gguf, [])):
            try:
                encodings = self._model_encodings(model)
            except (ValueError, OSError) as exc:
                logger.warning("%s: %s", model[0], exc)
                continue
            if encodings is not None and encodings.primary is not None:
                found.append((model, encodings.primary, encodings.parameters))
                continue
            hint = SupportedEncoding.parse_from_file_name(model[0])
            if hint is not None:
                found.append((model, hint, 0))
        return found

    @cached_property
    def supported_encodings(self) -> list[SupportedEncoding]:
        """Every encoding the repository's weights come in, dominant first.

        Each GGUF model counts once, in its own encoding; safetensors and PyTorch files
        count every dtype they hold. All are weighed by parameters, over every shard, and
        equal weights keep the declaration order of ``SupportedEncoding``.
        """
        totals = [(encoding, weight) for _, encoding, weight in self._gguf_totals()]
        totals += self._format_totals(WeightsFormat.safetensors)
        totals += self._format_totals(WeightsFormat.pytorch)
        return rank_totals(totals)

    def files_for_encoding(
        self,
        encoding: SupportedEncoding,
        weights_format: WeightsFormat | None = None,
        alternate_encoding: SupportedEncoding | None = None,
    ) -> dict[WeightsFormat, list[Path]]:
        """The weight files holding ``encoding``, by format (repo-relative paths).

        GGUF: every model (all shards of a split one) stored in ``encoding``. Safetensors
        and PyTorch: all files of the format, when they hold ``encoding``. With
        ``weights_format`` only that format is searched. When nothing matches and
        ``alternate_encoding`` is given, the search is repeated once for it.
        """
        encoding = _coerce(SupportedEncoding, encoding)
        formats = [weights_format] if weights_format is not None else list(_FORMAT_ORDER)
        found: dict[WeightsFormat, list[Path]] = {}
        for fmt in (_coerce(WeightsFormat, f) for f in formats):
            if fmt is WeightsFormat.gguf:
                files = [f for model, e, _ in self._gguf_totals() if e is encoding for f in model]
            elif encoding in self._format_encodings(fmt):
                files = list(self.weight_files.get(fmt, []))
            else:
                files = []
            if files:
                found[fmt] = [Path(f) for f in files]
        if not found and alternate_encoding is not None:
            logger.info("no %s weights in %s; looking for %s", encoding, self, alternate_encoding)
            return self.files_for_encoding(alternate_encoding, weights_format)
        return found


def _primary(encodings: ModelEncodings, name: str) -> SupportedEncoding:
    if encodings.primary is None:
        raise ValueError(f"{name} holds no tensors in an encoding weights are stored in")
    return encodings.primary


def _walk(root: Path) -> list[str]:
    """Every file under ``root`` as a sorted POSIX path relative to it, skipping hidden
    folders (``.git``, ``.cache``)."""
    names: list[str] = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        base = Path(folder).relative_to(root)
        names.extend((base / f).as_posix() for f in files)
    return sorted(names)
