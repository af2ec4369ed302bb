"""A Hugging Face Hub on loopback: real ``olah`` serving local git repositories, behind a small
aiohttp proxy. Reusable by any test that needs the Hub (fetch, lock, image builds).

API
---
Fixture ``hub_mirror`` (session scope) -> :class:`HubMirror`, started on 127.0.0.1 (reachable from
``docker build --network host``), stopped at the end of the session. Its repositories carry the
catalog's real repo ids, file names and layout with small generated contents, committed on
``main``:

- ``hub_mirror.endpoint``: the URL to put in ``HF_ENDPOINT``.
- ``hub_mirror.token``: a token the gated repositories accept (any other token gets 403).
- ``hub_mirror.env(token=True)``: ``{"HF_ENDPOINT": ..., ["HF_TOKEN": ...]}``.
- ``hub_mirror.content(repo_id, path, revision="main") -> bytes``: what the Hub serves.
- ``hub_mirror.add_revision(repo_id, branch, {path: bytes | None})`` -> commit: a new branch off
  ``main`` with files changed (``None`` deletes one). Use a branch name unique to your test.
- ``hub_mirror.throttle(bytes_per_second | None)``: pace file downloads (to kill one mid-file).
- ``hub_mirror.cut(after_bytes | None)``: every file download drops its connection after that
  many bytes of body (a network failure mid-file).
- ``hub_mirror.stall(seconds, times)``: the next ``times`` file downloads are accepted and then
  answered only after ``seconds`` (a slow Hub: the client's read timeout fires).
- ``hub_mirror.peak_buffer``: the largest piece of a file the proxy held at once (it streams).
- ``hub_mirror.requests``: every request the proxy saw (method, path, range, status).

``make_catalog_repos(root, sizes=...)`` builds the same repositories anywhere (``root/models/<repo_id>``,
olah's layout); ``write_local_tree(dir, mirror)`` lays them out for ``--from DIR``;
``make_comfy_root(dir)`` makes the smallest directory fetch and verify accept as a ComfyUI root.
Fixture ``run_cli`` runs ``trellis-box`` in-process: ``run_cli("models", "list") -> CliResult``
(``code``, ``out``, ``err``).

Why the proxy: olah serves local repositories but knows nothing of gating, ignores ``Range`` on
them and sends no ``ETag`` with the body. huggingface.co answers a gated repository without
access with 401/403 and ``X-Error-Code: GatedRepo`` and serves files (from its CDN) with ``ETag``
and ``Range``/``If-Range``. The proxy adds exactly those and forwards everything else to olah.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from trellis_box.weights.catalog import load_catalog

TOKEN = "hf_trellisbox_test_token_4c1d9e"  # accepted by the gated repositories; asserted never printed
_GATED_BODY = "Access to model {repo} is restricted. You must have access to it and be authenticated."
# huggingface.co's answer, on every endpoint, to a token it does not know (expired, revoked, typo).
INVALID_TOKEN_PREFIX = "hf_invalid"
_INVALID_TOKEN_BODY = "Invalid credentials in Authorization header"
_STEP = 16 * 1024
_RESOLVE = re.compile(r"^/(?:models/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def _content(repo: str, path: str, size: int) -> bytes:
    data = random.Random(f"{repo}/{path}").randbytes(size)
    if path.endswith(".json"):
        data = f'{{"repo": "{repo}", "file": "{path}"}}'.encode()
    # olah reads any 121..149-byte blob as a possible LFS pointer and chokes on binary ones.
    return data + b" " * (150 - len(data)) if 120 < len(data) < 150 else data


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **_GIT_ENV}).stdout.strip()


DEFAULT_SIZES = {".safetensors": 64 * 1024, ".pth": 96 * 1024}
BIG_FILE = ("facebook/dinov3-vitl16-pretrain-lvd1689m", "model.safetensors")
BIG_SIZE = 3 * 1024 * 1024  # long enough, throttled, to kill a download mid-file


def make_catalog_repos(root: Path, sizes: dict[str, int] | None = None) -> dict[str, Path]:
    """A git repository per catalog model at ``root/models/<repo_id>``; returns repo id -> path."""
    sizes = sizes or DEFAULT_SIZES
    out = {}
    for model in load_catalog():
        repo = root / "models" / model.repo
        repo.mkdir(parents=True)
        _git(repo, "init", "-q", "-b", "main")
        for path in model.files:
            size = BIG_SIZE if (model.repo, path) == BIG_FILE else sizes.get(Path(path).suffix, 0)
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_bytes(_content(model.repo, path, size))
        (repo / "README.md").write_text(f"---\nlicense: other\n---\n{model.title} (test copy)\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "initial")
        out[model.repo] = repo
    return out


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    path: str
    range: str | None
    authorized: bool
    status: int


class _Proxy:
    def __init__(self, upstream: str, gated: set[str], token: str) -> None:
        self.upstream = upstream
        self.gated = gated
        self.token = token
        self.rate: int | None = None
        self.cut: int | None = None
        self.stalls = 0
        self.stall_seconds = 0.0
        self.peak_buffer = 0  # the largest piece of a file held in memory at once
        self.requests: list[ProxyRequest] = []
        self._session: ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        match = _RESOLVE.match(request.path)
        if auth and auth.startswith(f"Bearer {INVALID_TOKEN_PREFIX}"):
            response: web.StreamResponse = web.json_response(
                {"error": _INVALID_TOKEN_BODY}, status=401, headers={"X-Error-Message": _INVALID_TOKEN_BODY})
        elif match and match["repo"] in self.gated and auth != f"Bearer {self.token}":
            status = 403 if auth else 401
            response = web.json_response(
                {"error": _GATED_BODY.format(repo=match["repo"])}, status=status,
                headers={"X-Error-Code": "GatedRepo", "X-Error-Message": _GATED_BODY.format(repo=match["repo"])})
        elif match and request.method == "GET":
            response = await self._serve_file(request)
        else:
            response = await self._forward(request)
        self.requests.append(ProxyRequest(request.method, request.path, request.headers.get("Range"),
                                          auth == f"Bearer {self.token}", response.status))
        return response

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=await request.read(), allow_redirects=False) as up:
            body = await up.read()
            keep = {k: v for k, v in up.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")}
            if request.method == "HEAD":
                return web.Response(status=up.status, headers={**keep, "Content-Length": up.headers.get(
                    "Content-Length", "0")})
            return web.Response(status=up.status, body=body, headers=keep)

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        """The CDN's side of a download: ETag, Range and If-Range, optionally paced, stalled or cut.
        Streamed from olah chunk by chunk: a multi-GB file never sits in memory, and its first
        bytes leave before olah has sent the last."""
        assert self._session is not None
        url = self.upstream + request.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "user-agent")}
        async with self._session.head(url, headers=headers, allow_redirects=False) as head:
            if head.status != 200:
                return await self._forward(request)
            etag = '"' + head.headers["etag"].strip('"') + '"'
            commit = head.headers.get("x-repo-commit", "")
            size = int(head.headers["content-length"])
        if self.stalls:
            self.stalls -= 1
            await asyncio.sleep(self.stall_seconds)  # connected, answering nothing: a slow Hub
        start, status = 0, 200
        ranged = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if ranged and request.headers.get("If-Range", etag) == etag and int(ranged[1]) < size:
            start, status = int(ranged[1]), 206
        out = web.StreamResponse(status=status, headers={
            "ETag": etag, "X-Repo-Commit": commit, "Accept-Ranges": "bytes",
            "Content-Length": str(size - start),
            **({"Content-Range": f"bytes {start}-{size - 1}/{size}"} if status == 206 else {})})
        await out.prepare(request)
        end = size if self.cut is None else min(size, start + self.cut)
        position = 0  # of the file, as read from olah (which ignores Range on local repositories)
        async with self._session.get(url, headers=headers) as up:
            async for chunk in up.content.iter_chunked(_STEP):
                self.peak_buffer = max(self.peak_buffer, len(chunk))
                piece = chunk[max(0, start - position):max(0, end - position)]
                position += len(chunk)
                if piece:
                    await out.write(piece)
                    if self.rate:
                        await asyncio.sleep(len(piece) / self.rate)  # pacing, not waiting for an event
                if position >= end:
                    break
        if end < size:
            assert request.transport is not None
            request.transport.close()  # mid-body: the client sees the connection drop
            return out
        await out.write_eof()
        return out

    async def start(self, host: str) -> tuple[web.AppRunner, int]:
        self._session = ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        return runner, runner.addresses[0][1]

    async def stop(self, runner: web.AppRunner) -> None:
        await runner.cleanup()
        if self._session:
            await self._session.close()


class HubMirror:
    """olah + the proxy, both on ``host``. See the module docstring."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.host = host
        self.mirrors = workdir / "mirrors"
        self.repos = make_catalog_repos(self.mirrors)
        self.token = TOKEN
        self.gated = {m.repo for m in load_catalog() if m.gated}
        self._olah: subprocess.Popen[bytes] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._proxy: _Proxy | None = None
        self.endpoint = ""
        self.olah_url = ""

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> None:
        config = self.workdir / "olah.toml"
        config.write_text(
            f'[basic]\nhost = "{self.host}"\nport = 0\nrepos-path = "{self.workdir / "olah-cache"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\n[accessibility]\noffline = true\n')
        log = (self.workdir / "olah.log").open("wb")
        self._olah = subprocess.Popen(
            [sys.executable, "-c", "from olah.server import main; main()", "--config", str(config),
             "--log-path", str(self.workdir / "olah-logs")],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        self.olah_url = f"http://{self.host}:{self._olah_port(timeout)}"
        self._wait_ready(self.olah_url, timeout)
        self._proxy = _Proxy(self.olah_url, self.gated, self.token)
        self._thread = threading.Thread(target=self._loop.run_forever, name="hub-proxy", daemon=True)
        self._thread.start()
        self._runner, port = asyncio.run_coroutine_threadsafe(self._proxy.start(self.host), self._loop).result(30)
        self.endpoint = f"http://{self.host}:{port}"

    def _olah_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        log = self.workdir / "olah.log"
        while time.monotonic() < deadline:
            found = re.search(rf"running on http://{re.escape(self.host)}:(\d+)", log.read_text(errors="replace"))
            if found:
                return int(found[1])
            if self._olah is not None and self._olah.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"olah did not start within {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")

    def _wait_ready(self, url: str, timeout: float) -> None:
        probe = f"{url}/api/models/{next(iter(self.repos))}/revision/main"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(probe, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"olah at {url} did not serve {probe} within {timeout} s")

    def stop(self) -> None:
        if self._runner is not None and self._proxy is not None:
            asyncio.run_coroutine_threadsafe(self._proxy.stop(self._runner), self._loop).result(30)
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if self._olah is not None:
            self._olah.terminate()
            try:
                self._olah.wait(10)
            except subprocess.TimeoutExpired:
                self._olah.kill()
                self._olah.wait()

    # -- what tests use -----------------------------------------------------------------------
    def env(self, token: bool = True) -> dict[str, str]:
        return {"HF_ENDPOINT": self.endpoint, **({"HF_TOKEN": self.token} if token else {})}

    def content(self, repo_id: str, path: str, revision: str = "main") -> bytes:
        return subprocess.run(["git", "-C", str(self.repos[repo_id]), "show", f"{revision}:{path}"],
                              check=True, capture_output=True).stdout

    def add_revision(self, repo_id: str, branch: str, files: dict[str, bytes | Path | None]) -> str:
        repo = self.repos[repo_id]
        _git(repo, "checkout", "-q", "-b", branch, "main")
        try:
            for path, data in files.items():
                if data is None:
                    _git(repo, "rm", "-q", path)
                else:
                    if isinstance(data, Path):
                        shutil.copyfile(data, repo / path)
                    else:
                        (repo / path).write_bytes(data)
                    _git(repo, "add", path)
            _git(repo, "commit", "-q", "-m", f"test revision {branch}")
            return _git(repo, "rev-parse", "HEAD")
        finally:
            _git(repo, "checkout", "-q", "main")

    def throttle(self, bytes_per_second: int | None) -> None:
        assert self._proxy is not None
        self._proxy.rate = bytes_per_second

    def cut(self, after_bytes: int | None) -> None:
        assert self._proxy is not None
        self._proxy.cut = after_bytes

    def stall(self, seconds: float, times: int) -> None:
        """The next ``times`` file downloads get no answer for ``seconds`` after connecting."""
        assert self._proxy is not None
        self._proxy.stall_seconds, self._proxy.stalls = seconds, times

    @property
    def peak_buffer(self) -> int:
        assert self._proxy is not None
        return self._proxy.peak_buffer

    @property
    def requests(self) -> list[ProxyRequest]:
        assert self._proxy is not None
        return self._proxy.requests


def write_local_tree(dest: Path, mirror: HubMirror) -> Path:
    """The repositories' ``main`` files laid out for ``models fetch --from dest``."""
    for model in load_catalog():
        for path in model.files:
            out = dest / model.repo / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(mirror.content(model.repo, path))
    return dest


def make_comfy_root(root: Path) -> Path:
    """A ComfyUI root as the image has it before the weights: main.py and the RMBG node pack."""
    (root / "custom_nodes" / "ComfyUI-BRIA_AI-RMBG" / "RMBG-1.4").mkdir(parents=True)
    (root / "custom_nodes" / "ComfyUI-BRIA_AI-RMBG" / "RMBG-1.4" / "put").write_text("")
    (root / "models").mkdir()
    (root / "main.py").write_text("# ComfyUI stand-in\n")
    return root


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    from trellis_box.cli.app import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def hub_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubMirror]:
    mirror = HubMirror(tmp_path_factory.mktemp("hub"))
    try:
        mirror.start()
        yield mirror
    finally:
        mirror.stop()
