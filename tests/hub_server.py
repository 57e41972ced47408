"""A local stand-in for the Hugging Face Hub, for tests: repos served from local folders.

It speaks the HTTP API the real ``huggingface_hub`` client uses (``HF_ENDPOINT`` pointed
at it): repo info, tree listings with pagination, paths-info, and ``/resolve`` with ETag,
commit, exact lengths and byte ranges. Errors carry the Hub's ``X-Error-Code``s, and
failures can be scheduled (``fail_next``). Every request is logged, so tests can check
what the client asked for and how many bytes it got. Xet headers are never sent.

Usage::

    with HubServer() as hub:
        sha = hub.add_repo("acme/tiny", folder)          # gated=True, safetensors_info=...
        hub.fail_next(r"/api/models/acme/tiny", 503, times=2)
        ...  # HF_ENDPOINT=hub.url
        hub.requests  # [LoggedRequest(method, path, query, headers, status, sent), ...]

``serve_hub(home, monkeypatch)`` starts one and points the environment at it (endpoint,
an ``HF_HOME`` cache under ``home``, no token, no offline mode, short retry backoff); the
``hub`` fixture wraps it (``pytest_plugins = ["hub_server"]``, or a three-line fixture of
your own around ``serve_hub``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

__all__ = ["HubServer", "LoggedRequest", "hub", "hub_subprocess_env", "serve_hub"]

#: Files served as Git LFS objects (ETag = sha256, ``lfs`` block in listings).
LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
_DATE = "2024-05-01T12:00:00.000Z"


@dataclass
class LoggedRequest:
    """One request the server answered."""

    method: str
    path: str  # raw path, percent-encoded as sent
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    status: int
    sent: int  # body bytes sent


@dataclass
class _File:
    path: str
    source: Path
    size: int
    etag: str
    lfs: bool


@dataclass
class _Repo:
    repo_id: str
    sha: str
    files: dict[str, _File]
    gated: bool
    safetensors: dict[str, Any] | None
    revisions: set[str] = field(default_factory=set)
    cdn: bool = False

    def directories(self) -> set[str]:
        dirs = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return dirs


@dataclass
class _Failure:
    pattern: re.Pattern[str]
    status: int
    times: int
    method: str | None
    retry_after: int | None
    code: str | None


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def safetensors_parameters(paths: list[Path]) -> dict[str, int]:
    """Parameters per dtype over safetensors files, read with the standard library."""
    counts: dict[str, int] = {}
    for path in paths:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            n = 1
            for dim in entry["shape"]:
                n *= dim
            counts[entry["dtype"]] = counts.get(entry["dtype"], 0) + n
    return counts


class HubServer:
    """A threaded HTTP server on 127.0.0.1 (random port) that serves repos like the Hub."""

    def __init__(self, page_size: int = 1000) -> None:
        self.page_size = page_size
        self.repos: dict[str, _Repo] = {}
        self.requests: list[LoggedRequest] = []
        #: Tokens that may read gated repos (sent as ``authorization: Bearer <token>``).
        self.tokens: set[str] = set()
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The endpoint, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- content ---------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        folder: str | os.PathLike[str],
        *,
        gated: bool = False,
        safetensors_info: bool = True,
        revisions: tuple[str, ...] = (),
        cdn: bool = False,
    ) -> str:
        """Serve every file under ``folder`` (hidden folders skipped) as ``repo_id``.

        Returns the commit sha (40 hex, derived from the content). ``gated`` refuses file
        access without a token in :attr:`tokens` (401 ``GatedRepo``); the repo info is
        still served. ``safetensors_info`` adds the Hub's parameter counts per dtype when
        the repo has safetensors files. ``revisions`` are branch names served besides
        ``main`` and the sha. ``cdn`` answers LFS files at ``/resolve`` with a 302 to
        ``http://localhost:<port>/cdn/...`` (another origin, as the Hub's storage is),
        carrying ``X-Linked-Etag``/``X-Linked-Size``. Adding a repo again replaces it.
        """
        root = Path(folder)
        files: dict[str, _File] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                source = Path(dirpath) / name
                rel = source.relative_to(root).as_posix()
                data = source.read_bytes()
                lfs = rel.lower().endswith(LFS_SUFFIXES)
                etag = hashlib.sha256(data).hexdigest() if lfs else _git_blob_sha1(data)
                files[rel] = _File(rel, source, len(data), etag, lfs)
        digest = hashlib.sha1(repo_id.encode())
        for rel in sorted(files):
            digest.update(f"{rel}\0{files[rel].etag}\0".encode())
        sha = digest.hexdigest()
        shards = [f.source for f in files.values() if f.path.endswith(".safetensors")]
        parameters = safetensors_parameters(shards) if shards and safetensors_info else None
        block = (
            {"parameters": parameters, "total": sum(parameters.values())} if parameters else None
        )
        with self._lock:
            self.repos[repo_id] = _Repo(repo_id, sha, files, gated, block, set(revisions), cdn)
        return sha

    def remove_repo(self, repo_id: str) -> None:
        with self._lock:
            self.repos.pop(repo_id, None)

    def fail_next(
        self,
        pattern: str,
        status: int = 503,
        times: int = 1,
        *,
        method: str | None = None,
        retry_after: int | None = None,
        code: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose unquoted path (without the query)
        matches the regex ``pattern`` (``re.search``; and ``method``, if given) with
        ``status`` (and ``X-Error-Code: code``, ``Retry-After``), then serve normally."""
        failure = _Failure(re.compile(pattern), status, times, method, retry_after, code)
        with self._lock:
            self._failures.append(failure)

    # -- the log ---------------------------------------------------------------------------

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def requests_to(self, pattern: str, method: str | None = None) -> list[LoggedRequest]:
        """Logged requests whose unquoted path, without the query, matches ``pattern``
        (``re.search``)."""
        return [
            r
            for r in list(self.requests)
            if re.search(pattern, urllib.parse.unquote(r.path.partition("?")[0]))
            and (method is None or r.method == method)
        ]

    def bytes_served(self, pattern: str) -> int:
        """Body bytes sent for requests whose unquoted path matches ``pattern``."""
        return sum(r.sent for r in self.requests_to(pattern))

    # -- internals -------------------------------------------------------------------------

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if (
                    failure.times > 0
                    and failure.pattern.search(urllib.parse.unquote(path))
                    and (failure.method is None or failure.method == method)
                ):
                    failure.times -= 1
                    return failure
        return None

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)


class _Reply(Exception):
    """An error answer: status, X-Error-Code and message."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        server_hub = hub

    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: HubServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests go to the hub's log instead."""

    # -- plumbing --------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        self._query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        self._method = method
        self._raw_path = raw_path
        self._sent = 0
        self._status = 0
        self._logged = False
        body = b""
        length = int(self.headers.get("content-length") or 0)
        if length:
            body = self.rfile.read(length)
        try:
            failure = self.server_hub._take_failure(method, raw_path)
            if failure is not None:
                extra = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
                message = f"scheduled failure {failure.status}"
                raise _Reply(failure.status, failure.code, message, extra)
            self._route(method, raw_path, body)
        except _Reply as reply:
            self._error(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if not self._logged:
                self._log()

    def _log(self) -> None:
        self._logged = True
        self.server_hub._log(
            LoggedRequest(
                self._method,
                self.path,
                self._query,
                {k.lower(): v for k, v in self.headers.items()},
                self._status,
                self._sent,
            )
        )

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def _send(
        self, status: int, body: bytes, headers: dict[str, str], length: int | None = None
    ) -> None:
        self._status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if self._method != "HEAD":
            self._sent = len(body)
        # Logged before the client can see the answer, so tests never race the log.
        self._log()
        self.end_headers()
        if self._method != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(value).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

    def _error(self, reply: _Reply) -> None:
        headers = {"X-Error-Message": reply.message, **reply.headers}
        if reply.code:
            headers["X-Error-Code"] = reply.code
        self._json(reply.status, {"error": reply.message}, headers)

    # -- routing ---------------------------------------------------------------------------

    def _route(self, method: str, raw_path: str, body: bytes) -> None:
        segments = raw_path.strip("/").split("/")
        if segments[:2] == ["api", "models"] and len(segments) > 2:
            repo_id, rest = _split_repo(
                segments[2:], ("revision", "tree", "paths-info"), self.server_hub.repos
            )
            repo = self._repo(repo_id)
            if not rest and method == "GET":
                return self._info(repo, "main")
            if rest[:1] == ["revision"] and len(rest) == 2 and method == "GET":
                return self._info(repo, urllib.parse.unquote(rest[1]))
            if rest[:1] == ["tree"] and len(rest) >= 2 and method == "GET":
                folder = "/".join(urllib.parse.unquote(s) for s in rest[2:])
                return self._tree(repo, urllib.parse.unquote(rest[1]), folder, rest)
            if rest[:1] == ["paths-info"] and len(rest) == 2 and method == "POST":
                return self._paths_info(repo, urllib.parse.unquote(rest[1]), body)
            raise _Reply(404, None, f"no route {raw_path}")
        if segments[0] == "cdn" and len(segments) >= 4:
            repo_id, rest = _split_repo(segments[1:], (), self.server_hub.repos)
            f = self._repo(repo_id).files.get("/".join(urllib.parse.unquote(p) for p in rest))
            if f is None or method not in ("GET", "HEAD"):
                raise _Reply(404, None, "no such object")
            return self._serve_bytes(f, {"ETag": f'"{f.etag}"'})
        repo_id, rest = _split_repo(segments, ("resolve",), self.server_hub.repos)
        if rest[:1] == ["resolve"] and len(rest) >= 3 and method in ("GET", "HEAD"):
            repo = self._repo(repo_id)
            revision = urllib.parse.unquote(rest[1])
            path = "/".join(urllib.parse.unquote(s) for s in rest[2:])
            return self._resolve(repo, revision, path)
        raise _Reply(404, None, f"no route {raw_path}")

    def _repo(self, repo_id: str) -> _Repo:
        repo = self.server_hub.repos.get(repo_id)
        if repo is None:
            raise _Reply(404, "RepoNotFound", "Repository not found")
        return repo

    def _check_revision(self, repo: _Repo, revision: str) -> None:
        if revision not in ("main", repo.sha) and revision not in repo.revisions:
            raise _Reply(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def _info(self, repo: _Repo, revision: str) -> None:
        self._check_revision(repo, revision)
        blobs = self._query.get("blobs") == ["true"]
        siblings = []
        for f in repo.files.values():
            entry: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                entry["size"] = f.size
                entry["blobId"] = _git_blob_sha1(f.etag.encode())
                if f.lfs:
                    entry["lfs"] = {"size": f.size, "sha256": f.etag, "pointerSize": 134}
            siblings.append(entry)
        info: dict[str, Any] = {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": repo.sha,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "lastModified": _DATE,
            "createdAt": _DATE,
            "tags": [],
            "siblings": siblings,
        }
        if repo.safetensors is not None:
            info["safetensors"] = repo.safetensors
        self._json(200, info)

    def _entry(self, repo: _Repo, path: str) -> dict[str, Any]:
        f = repo.files.get(path)
        if f is None:
            oid = hashlib.sha1(f"{repo.sha}:{path}".encode()).hexdigest()
            return {"type": "directory", "path": path, "oid": oid, "size": 0}
        entry: dict[str, Any] = {"type": "file", "path": path, "oid": f.etag, "size": f.size}
        if f.lfs:
            entry["oid"] = _git_blob_sha1(f.etag.encode())
            entry["lfs"] = {"oid": f.etag, "size": f.size, "pointerSize": 134}
        return entry

    def _tree(self, repo: _Repo, revision: str, folder: str, rest: list[str]) -> None:
        self._check_revision(repo, revision)
        folder = folder.strip("/")
        dirs = repo.directories()
        if folder and folder not in dirs:
            raise _Reply(404, "EntryNotFound", f"{folder} does not exist on {revision}")
        recursive = self._query.get("recursive") == ["true"]
        prefix = f"{folder}/" if folder else ""
        paths = sorted(p for p in [*dirs, *repo.files] if p.startswith(prefix))
        if not recursive:
            paths = [p for p in paths if "/" not in p[len(prefix) :]]
        start = int(self._query.get("cursor", ["0"])[0])
        page = paths[start : start + self.server_hub.page_size]
        headers = {}
        if start + len(page) < len(paths):
            query = {k: v[0] for k, v in self._query.items() if k != "cursor"}
            query["cursor"] = str(start + len(page))
            base = f"{self.server_hub.url}/api/models/{repo.repo_id}/{'/'.join(rest)}"
            headers["Link"] = f'<{base}?{urllib.parse.urlencode(query)}>; rel="next"'
        self._json(200, [self._entry(repo, p) for p in page], headers)

    def _paths_info(self, repo: _Repo, revision: str, body: bytes) -> None:
        self._check_revision(repo, revision)
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        dirs = repo.directories()
        found = [
            self._entry(repo, p.strip("/"))
            for p in form.get("paths", [])
            if p.strip("/") in repo.files or p.strip("/") in dirs
        ]
        self._json(200, found)

    def _authorized(self, repo: _Repo) -> bool:
        if not repo.gated:
            return True
        auth = self.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.server_hub.tokens

    def _resolve(self, repo: _Repo, revision: str, path: str) -> None:
        self._check_revision(repo, revision)
        if not self._authorized(repo):
            status = 403 if self.headers.get("authorization") else 401
            raise _Reply(
                status,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in.",
            )
        f = repo.files.get(path)
        commit = {"X-Repo-Commit": repo.sha}
        if f is None:
            raise _Reply(404, "EntryNotFound", f"Entry not found: {path}", commit)
        if f.lfs and repo.cdn:
            host = f"http://localhost:{self.server_hub.port}"
            location = f"{host}/cdn/{repo.repo_id}/{urllib.parse.quote(f.path)}"
            headers = {
                **commit,
                "Location": location,
                "X-Linked-Etag": f'"{f.etag}"',
                "X-Linked-Size": str(f.size),
            }
            return self._send(302, b"", headers)
        self._serve_bytes(f, {**commit, "ETag": f'"{f.etag}"'})

    def _serve_bytes(self, f: _File, headers: dict[str, str]) -> None:
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        span = _parse_range(self.headers.get("range"), f.size)
        if span == "unsatisfiable":
            raise _Reply(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{f.size}"})
        if span is None:
            start, end, status = 0, f.size - 1, 200
        else:
            (start, end), status = span, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        length = max(end - start + 1, 0)
        if self._method == "HEAD":
            return self._send(status, b"", headers, length=length)
        with open(f.source, "rb") as source:
            source.seek(start)
            data = source.read(length)
        self._send(status, data, headers)


def _split_repo(
    segments: list[str], keywords: tuple[str, ...], known: dict[str, _Repo]
) -> tuple[str, list[str]]:
    """``(repo id, rest)``: a served id of two segments, then one of one segment; for an
    unknown id, two segments unless the second is a route keyword."""
    ids = [urllib.parse.unquote(s) for s in segments[:2]]
    if len(ids) == 2 and "/".join(ids) in known:
        return "/".join(ids), segments[2:]
    if ids[0] in known or len(ids) < 2 or segments[1] in keywords:
        return ids[0], segments[1:]
    return "/".join(ids), segments[2:]


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` (inclusive, clamped), ``"unsatisfiable"``, or ``None`` for the
    whole file (no header, or one this server does not understand)."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        count = int(last)
        if count == 0:
            return "unsatisfiable"
        return max(size - count, 0), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, end


@contextlib.contextmanager
def serve_hub(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A running :class:`HubServer`, with the environment pointed at it: ``HF_ENDPOINT``,
    ``HF_HOME``/``HF_HUB_CACHE`` under ``home``, no ``HF_TOKEN``, Xet and offline mode off,
    ``QUANTLENS_HUB_BACKOFF`` 0.01 s. quantlens reads these when it calls the Hub; code
    that relies on ``huggingface_hub`` reading them at import should run in a subprocess
    with :func:`hub_subprocess_env`."""
    with HubServer() as server:
        for name, value in hub_subprocess_env(server, home).items():
            monkeypatch.setenv(name, value)
        for name in (
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
        ):
            monkeypatch.delenv(name, raising=False)
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        import quantlens.hub

        quantlens.hub.clear_cache()
        try:
            yield server
        finally:
            quantlens.hub.clear_cache()


@pytest.fixture
def hub(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubServer]:
    """:func:`serve_hub` as a fixture, for ``pytest_plugins = ["hub_server"]``."""
    with serve_hub(tmp_path_factory.mktemp("hf-home"), monkeypatch) as server:
        yield server


def hub_subprocess_env(server: HubServer, home: Path) -> dict[str, str]:
    """Environment variables that point ``huggingface_hub`` at ``server`` with a cache
    in ``home`` (add them to a subprocess's environment, without ``HF_TOKEN``)."""
    return {
        "HF_ENDPOINT": server.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "QUANTLENS_HUB_BACKOFF": "0.01",
    }
