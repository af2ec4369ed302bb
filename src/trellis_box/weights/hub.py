"""The Hugging Face Hub: the only module that imports huggingface_hub.

Resolves a revision to a commit, lists sizes (and LFS sha256) of the catalog's files, checks access
to gated repositories, and opens a file for download at a byte offset (``Range`` + ``If-Range``,
so a download killed with its process resumes on the next run; huggingface_hub itself resumes only
within one process). ``lock_models`` builds a lock from the Hub alone. Every Hub error leaves
here as one of ours; the token never appears in them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import httpx2
from huggingface_hub import HfApi, constants, get_hf_file_metadata, get_session, hf_hub_url, hf_raise_for_status
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # in __all__, lazily bound

from trellis_box import __version__
from trellis_box.errors import (
    DownloadCut,
    GatedAccessDenied,
    HubFilesMissing,
    HubRepoNotFound,
    HubRevisionNotFound,
    HubTokenInvalid,
    HubTokenMissing,
    HubTooSlow,
    HubUnavailable,
    TrellisBoxError,
    UsageError,
)
from trellis_box.weights.catalog import Model, RepoPin
from trellis_box.weights.lock import Lock, LockedFile, LockedModel
from trellis_box.weights.sources import Body, RemoteFile, Resolved

DEFAULT_SECRET = Path("/run/secrets/hf_token")
SECRET_ENV = "TRELLIS_BOX_HF_TOKEN_SECRET"  # where the BuildKit secret is mounted (tests move it)
READ_TIMEOUT_ENV = "TRELLIS_BOX_HUB_READ_TIMEOUT"  # seconds without a byte before a download is retried
_DEFAULT_READ_TIMEOUT = 120.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_TOKEN_HOW = ("`token_file` FILE, a BuildKit secret mounted at /run/secrets/hf_token\n"
              "(`docker build --secret id=hf_token,src=FILE`), or the HF_TOKEN environment variable")


class Token:
    """A Hub token and where it came from; its text is never rendered."""

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin

    @property
    def secret(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Token(from {self.origin})"


def find_token(token_file: Path | None = None) -> Token | None:
    """The token from, in order: ``token_file``, the BuildKit secret, ``HF_TOKEN``; or None."""
    if token_file is not None:
        try:
            value = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read the token file {token_file}", detail=exc.strerror,
                             fix="pass a readable file holding the token on one line", path=token_file) from exc
        if not value:
            raise UsageError(f"token file {token_file} is empty",
                             fix="write the Hugging Face token into it, on one line", path=token_file)
        return Token(value, f"`token_file` {token_file}")
    secret = Path(os.environ.get(SECRET_ENV) or DEFAULT_SECRET)
    try:
        value = secret.read_text(encoding="utf-8").strip()
    except OSError:
        value = ""
    if value:
        return Token(value, f"build secret {secret}")
    value = os.environ.get("HF_TOKEN", "").strip()
    return Token(value, "HF_TOKEN") if value else None


def endpoint_for(pin: RepoPin) -> str:
    # Read at call time, not from huggingface_hub.constants (fixed at its import).
    return (pin.endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


class Hub:
    def __init__(self, token: Token | None) -> None:
        self._token = token

    def _auth(self) -> str | bool:
        # False, not None: None would let huggingface_hub pick up a token we were not given.
        return self._token.secret if self._token else False

    def _api(self, pin: RepoPin) -> HfApi:
        return HfApi(endpoint=endpoint_for(pin), library_name="trellis-box", library_version=__version__)

    def resolve(self, model: Model, revision: str) -> Resolved:
        """Pin ``model.pin`` at ``revision`` to a commit and read the sizes of the catalog's files."""
        pin = model.pin
        api = self._api(pin)
        try:
            commit = api.model_info(pin.repo, revision=revision, token=self._auth()).sha
            entries = api.get_paths_info(pin.repo, list(model.files), revision=commit, token=self._auth())
        except Exception as exc:  # noqa: BLE001 - _raise maps what it knows, re-raises the rest
            self._raise(exc, model, revision)
        files = {
            e.path: RemoteFile(e.path, int(e.size), e.lfs.sha256 if e.lfs else None)
            for e in entries if isinstance(e, RepoFile)
        }
        missing = [f for f in model.files if f not in files]
        if missing or commit is None:
            raise HubFilesMissing(
                f"{pin.repo} at {revision} lacks files the nodes need",
                detail=f"commit {commit}: missing " + ", ".join(missing),
                fix=(f"pin a revision that has them (revision = \"<commit>\" in the {model.name} table of `config`), "
                     "or update the catalog if upstream renamed them"),
                repo=pin.repo, revision=revision, commit=commit, missing=missing,
            )
        return Resolved(repo=pin.repo, revision=revision, commit=commit, files=files)

    def check_access(self, model: Model, resolved: Resolved) -> None:
        """Ask for one file's metadata: the Hub answers 401/403 ``GatedRepo`` without access."""
        url = hf_hub_url(resolved.repo, model.files[0], revision=resolved.commit,
                         endpoint=endpoint_for(model.pin))
        try:
            get_hf_file_metadata(url, token=self._auth(), retry_on_errors=True)
        except Exception as exc:  # noqa: BLE001
            self._raise(exc, model, resolved.revision)

    @contextmanager
    def open(self, model: Model, resolved: Resolved, path: str, *, offset: int = 0,
             validator: str | None = None) -> Iterator[Body]:
        """Stream ``path`` from byte ``offset``; ``validator`` (the earlier ETag) guards the resume."""
        url = hf_hub_url(resolved.repo, path, revision=resolved.commit, endpoint=endpoint_for(model.pin))
        headers = build_hf_headers(token=self._auth(), library_name="trellis-box", library_version=__version__)
        headers["Accept-Encoding"] = "identity"
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        try:
            with get_session().stream("GET", url, headers=headers, follow_redirects=True,
                                      timeout=httpx2.Timeout(30.0, read=_read_timeout())) as response:
                if response.status_code >= 400:
                    response.read()
                    hf_raise_for_status(response)
                yield _body(response, offset, url, endpoint_for(model.pin))
        except (HfHubHTTPError, httpx2.TransportError) as exc:
            self._raise(exc, model, resolved.revision)

    def _raise(self, exc: Exception, model: Model, revision: str) -> NoReturn:
        mapped = self._error(exc, model, revision)
        if mapped is None:
            raise exc
        raise mapped from exc

    def _error(self, exc: Exception, model: Model, revision: str) -> TrellisBoxError | None:
        pin = model.pin
        endpoint = endpoint_for(pin)
        page = f"{endpoint}/{pin.repo}"
        # GatedRepoError subclasses RepositoryNotFoundError: test it first.
        if isinstance(exc, GatedRepoError):
            licence = f"the {model.licence} applies whichever source you use ({model.licence_url})"
            if self._token is None:
                return HubTokenMissing(
                    f"gated model {pin.repo} needs a Hugging Face token",
                    detail=(f"{model.title} is gated; no token was given, so {endpoint} refused access.\n"
                            "Nothing was downloaded."),
                    fix=f"pass a token of an account granted access at {page}:\n{_TOKEN_HOW}",
                    note=licence, repo=pin.repo,
                )
            return GatedAccessDenied(
                f"no access to gated model {pin.repo}",
                detail=(f"{endpoint} refused the token from {self._token.origin} (gated repo).\n"
                        "Nothing was downloaded."),
                fix=(f"request access at {page} (approved by hand; can take days), then run again;\n"
                     f"or point {model.name} at a mirror that serves it "
                     f"(repo, endpoint in the {model.name} table of `config`)"),
                note=licence, repo=pin.repo, access_url=page,
            )
        if isinstance(exc, RevisionNotFoundError):
            return self._revision_missing(model, revision)
        if isinstance(exc, RemoteEntryNotFoundError):
            return HubFilesMissing(
                f"{pin.repo} at {revision}: a file the nodes need is gone",
                detail=str(exc).splitlines()[0], repo=pin.repo,
                fix=f"pin a revision that has it (revision = \"<commit>\" in the {model.name} table of `config`)",
            )
        if isinstance(exc, RepositoryNotFoundError):
            # Some mirrors answer RepoNotFound for an unknown revision: tell them apart by the refs.
            try:
                self._api(pin).list_repo_refs(pin.repo, token=self._auth())
            except Exception:  # noqa: BLE001 - the repository itself is not there
                return HubRepoNotFound(
                    f"repository {pin.repo} not found on {endpoint}",
                    detail="the Hub answered 'repository not found' (a private repo looks the same without a token)",
                    fix=(f"check the repo id, HF_ENDPOINT, or the {model.name} table of `config`; "
                         f"for a private repo pass a token ({_TOKEN_HOW.splitlines()[0]} ...)"),
                    repo=pin.repo,
                )
            return self._revision_missing(model, revision)
        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            if status == 401 and self._token is not None:
                return HubTokenInvalid(
                    f"{endpoint} rejected the Hugging Face token as invalid",
                    detail=(f"the token from {self._token.origin} is unknown to {endpoint} (expired, "
                            "revoked or mistyped): HTTP 401 for every repository. Nothing was downloaded."),
                    fix=(f"create a read token at {endpoint}/settings/tokens and pass it instead:\n"
                         f"{_TOKEN_HOW}"),
                    repo=pin.repo,
                )
            return HubUnavailable(
                f"{endpoint} answered HTTP {status} for {pin.repo}",
                detail=str(exc).splitlines()[0], repo=pin.repo,
                fix="run again later; if it persists, check HF_ENDPOINT or the mirror's health",
            )
        if isinstance(exc, httpx2.TimeoutException) and not isinstance(exc, httpx2.ConnectTimeout):
            return HubTooSlow(
                f"{endpoint} is reachable but too slow for {pin.repo}",
                detail=(f"it accepted the connection, then sent nothing for {_read_timeout():.0f} s "
                        f"({type(exc).__name__}), through every retry"),
                repo=pin.repo,
                fix=(f"run again later (the fetch resumes); on a slow link raise {READ_TIMEOUT_ENV} (seconds), "
                     "or set HF_ENDPOINT to a nearer mirror"),
            )
        if isinstance(exc, httpx2.TransportError | OSError):
            return HubUnavailable(
                f"cannot reach {endpoint} for {pin.repo}",
                detail=f"{type(exc).__name__}: {exc}", repo=pin.repo,
                fix=("check the network or set HF_ENDPOINT to a reachable mirror; "
                     "air-gapped: `trellis-box models fetch --from DIR`"),
            )
        return None

    def _revision_missing(self, model: Model, revision: str) -> HubRevisionNotFound:
        pin = model.pin
        try:
            refs = self._api(pin).list_repo_refs(pin.repo, token=self._auth())
            names = ", ".join(r.name for r in [*refs.branches, *refs.tags]) or "none"
        except Exception:  # noqa: BLE001 - the list is a courtesy
            names = "unknown"
        return HubRevisionNotFound(
            f"revision {revision!r} not found in {pin.repo}",
            detail=f"branches and tags on {endpoint_for(pin)}: {names}",
            fix=(f"use an existing branch, tag or full commit (revision = \"...\" in the {model.name} table "
                 "of `config`), or fix the commit in the weights lock"),
            repo=pin.repo, revision=revision,
        )


def _read_timeout() -> float:
    return float(os.environ.get(READ_TIMEOUT_ENV) or _DEFAULT_READ_TIMEOUT)


def _body(response: httpx2.Response, offset: int, url: str, endpoint: str) -> Body:
    validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
    if response.status_code == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            raise HubUnavailable(
                f"the server answered a range we did not ask for: {url}",
                detail=f"asked from byte {offset}, got Content-Range {response.headers.get('Content-Range')!r}",
                fix="run again; if it persists, delete models/.trellis-box/staging under the ComfyUI root",
            )
        total = None if match.group(3) == "*" else int(match.group(3))
        return Body(start=offset, total=total, validator=validator, chunks=_chunks(response, url, endpoint))
    length = response.headers.get("Content-Length")
    return Body(start=0, total=int(length) if length else None, validator=validator,
                chunks=_chunks(response, url, endpoint))


def _chunks(response: httpx2.Response, url: str, endpoint: str) -> Iterator[bytes]:
    """The body; a connection lost mid-file, or a server that stops sending, is a cut download
    (resumable), not an unreachable Hub."""
    try:
        yield from response.iter_bytes()  # as received: a cut keeps every byte that arrived
    except httpx2.ReadTimeout as exc:
        raise DownloadCut(
            f"download stalled: {url}",
            detail=(f"{endpoint} is reachable but sent nothing for {_read_timeout():.0f} s; "
                    "the bytes received so far are kept"),
            fix=(f"run the same fetch again: it resumes; on a slow link raise {READ_TIMEOUT_ENV} (seconds)"),
            url=url,
        ) from exc
    except httpx2.TransportError as exc:
        raise DownloadCut(
            f"download cut: {url}",
            detail=f"{type(exc).__name__}: {exc}; the bytes received so far are kept",
            fix="run the same fetch again: it resumes from the bytes already received",
            url=url,
        ) from exc


def lock_models(models: tuple[Model, ...], hub: Hub, *,
                on_file: Callable[[str], None] | None = None) -> Lock:
    """Resolve every model to a commit and record each file's size and sha256, downloading only
    files whose sha256 the Hub does not list (small, non-LFS files)."""
    out = {}
    for model in models:
        resolved = hub.resolve(model, model.pin.revision)
        hub.check_access(model, resolved)
        files = {}
        for path, remote in resolved.files.items():
            if on_file:
                on_file(f"{resolved.repo}/{path}")
            digest = remote.sha256 or _hash_remote(hub, model, resolved, path)
            files[path] = LockedFile(size=remote.size, sha256=digest)
        out[model.name] = LockedModel(repo=resolved.repo, revision=model.pin.revision,
                                      commit=resolved.commit, files=files)
    return Lock(out)


def _hash_remote(hub: Hub, model: Model, resolved: Resolved, path: str) -> str:
    h = hashlib.sha256()
    with hub.open(model, resolved, path) as body:
        for chunk in body.chunks:
            h.update(chunk)
    return h.hexdigest()
