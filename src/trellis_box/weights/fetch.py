"""Put every catalog file at its exact path under a ComfyUI root, complete and checked.

Order of work: resolve every model and check access to every one (gated first to fail) and the free
disk space, all before the first large byte; then download in parallel into a staging area on the
same filesystem (``models/.trellis-box/staging``), resuming partial files left by a killed run;
check size and sha256; then rename into place. A model placed as a directory appears whole in one
rename (the TRELLIS node treats "the directory exists" as "the model is installed"); a model placed
as files (RMBG-1.4, inside a node pack's directory) appears file by file, each whole.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

from trellis_box.errors import (
    ChecksumMismatch,
    DownloadCut,
    DownloadIncomplete,
    FetchInProgress,
    HubUnavailable,
    NotEnoughDisk,
    NotWritable,
)
from trellis_box.weights.catalog import (
    Model,
    RepoPin,
    baked_lock_path,
    baked_sources_path,
    comfy_root,
    fetch_record_path,
    staging_dir,
    state_dir,
)
from trellis_box.weights.local_tree import LocalTree
from trellis_box.weights.lock import Lock, LockedFile, LockedModel, package_lock_path
from trellis_box.weights.lock import read as read_lock
from trellis_box.weights.lock import write as write_lock
from trellis_box.weights.sources import Resolved, Source
from trellis_box.weights.verify import hash_files, human_size

DISK_LIMIT_ENV = "TRELLIS_BOX_DISK_FREE_BYTES"  # caps the free space fetch believes it has
DEFAULT_WORKERS = 4


def source_for(from_dir: Path | None, token_file: Path | None = None) -> Source:
    """The air-gapped tree at ``from_dir``, else the Hub. huggingface_hub is imported only for the
    Hub: an air-gapped machine may not even have it working."""
    if from_dir is not None:
        return LocalTree(from_dir)
    from trellis_box.weights.hub import Hub, find_token

    return Hub(find_token(token_file))


class FetchProgress(Protocol):
    """What fetch reports while it works (the CLI draws it; the library prints nothing)."""

    def checking(self, files: int, total: int) -> None: ...
    def checked(self, n: int) -> None: ...
    def planned(self, total: int, done: int) -> None: ...
    def started(self, key: str, size: int, done: int) -> None: ...
    def advanced(self, key: str, n: int) -> None: ...
    def finished(self, key: str) -> None: ...
    def retrying(self, key: str, reason: str, delay: float) -> None: ...


class _Quiet:
    def checking(self, files: int, total: int) -> None: ...
    def checked(self, n: int) -> None: ...
    def planned(self, total: int, done: int) -> None: ...
    def started(self, key: str, size: int, done: int) -> None: ...
    def advanced(self, key: str, n: int) -> None: ...
    def finished(self, key: str) -> None: ...
    def retrying(self, key: str, reason: str, delay: float) -> None: ...


# Seconds to wait before each retry of a source call that failed without any progress (a slow or
# briefly unreachable Hub); a download cut after some bytes resumes at once and never uses them up.
RETRY_DELAYS = (1.0, 2.0, 4.0)
T = TypeVar("T")


def _retried(call: Callable[[], T], key: str, progress: FetchProgress, stop: threading.Event,
             mark: Callable[[], int] = lambda: 0) -> T:
    """``call()``, again after a transient source error (``mark()`` growing means progress)."""
    failures = 0
    while True:
        before = mark()
        try:
            return call()
        except (HubUnavailable, DownloadCut) as exc:
            failures = 0 if mark() > before else failures + 1
            if failures > len(RETRY_DELAYS):
                raise
            delay = RETRY_DELAYS[failures - 1] if failures else 0.0
            progress.retrying(key, exc.message, delay)
            if stop.wait(delay):
                raise _Stopped(key) from exc


@dataclass
class _Job:
    model: Model
    path: str
    size: int
    expected: str | None  # sha256 the bytes must have (lock, or the Hub's LFS oid)
    target: Path
    staged: Path
    partial: Path
    state: str = "todo"  # placed | staged | todo
    sha256: str | None = None

    @property
    def key(self) -> str:
        return f"{self.model.pin.repo}/{self.path}"

    @property
    def meta(self) -> Path:
        return self.partial.with_name(self.partial.name + ".json")


@dataclass
class _Plan:
    model: Model
    resolved: Resolved
    jobs: list[_Job]
    area: Path  # staging/<name>: tree/ (complete files), partial/ (downloads in progress)


@dataclass(frozen=True)
class FetchedModel:
    name: str
    repo: str
    commit: str | None
    target: Path
    downloaded: int
    reused: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "repo": self.repo, "commit": self.commit, "target": str(self.target),
                "downloaded": self.downloaded, "reused": self.reused}


@dataclass(frozen=True)
class FetchReport:
    root: Path
    models: list[FetchedModel]
    baked_lock: Path
    lock_written: Path | None
    bytes_downloaded: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"root": str(self.root), "models": [m.to_dict() for m in self.models],
                "baked_lock": str(self.baked_lock),
                "lock_written": str(self.lock_written) if self.lock_written else None,
                "bytes_downloaded": self.bytes_downloaded, "notes": self.notes}


class _Stopped(Exception):
    """Another download failed: this one stops at its next chunk and keeps its partial file."""


def fetch(models: tuple[Model, ...], root: Path, source: Source, *, lock_path: Path | None = None,
          progress: FetchProgress | None = None, workers: int = DEFAULT_WORKERS) -> FetchReport:
    """Fetch ``models`` into ``root``.

    The resolved lock is always baked into the tree (``models/.trellis-box/weights.lock.json``).
    ``lock_path`` pins the fetch to that lock and is written (completed) when it lacks a model or a
    file; without it the package's lock, if one ships, pins the fetch and is only read: the
    installed package is never written to.
    """
    root = comfy_root(root)
    _check_writable(root, models, lock_path)
    with _exclusive(root):
        return _fetch(models, root, source, lock_path, progress or _Quiet(), workers)


def _writable(path: Path) -> bool:
    """Whether this process can create or replace ``path``: the nearest existing directory at or
    above it must be writable (and searchable)."""
    while not path.exists():
        path = path.parent
    return os.access(path if path.is_dir() else path.parent, os.W_OK | os.X_OK)


def _check_writable(root: Path, models: tuple[Model, ...], lock_path: Path | None) -> None:
    """Every place fetch will write, checked before the first byte is resolved or downloaded."""
    places = [state_dir(root)]
    for model in models:
        if model.placement == "directory":
            # the directory is renamed aside and a new one renamed in: both it and its parent change
            places += [model.target_dir(root), model.target_dir(root).parent]
        else:
            places += sorted({model.file_target(root, f).parent for f in model.files})
    if lock_path is not None:
        places.append(lock_path.parent)
    refused = [p for p in dict.fromkeys(places) if not _writable(p)]
    if refused:
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = f"uid {os.geteuid()}"
        raise NotWritable(
            f"fetch cannot write where the weights go under {root}",
            detail=(f"not writable by {user}:\n" + "\n".join(str(p) for p in refused)
                    + "\nNothing was resolved or downloaded."),
            fix=(f"run the fetch as a user who can write there, or give {user} write access to "
                 "those directories (a `lock_path` FILE must be in a writable directory)"),
            paths=[str(p) for p in refused], user=user,
        )


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """One fetch per ComfyUI root: two would share the staging area."""
    state_dir(root).mkdir(parents=True, exist_ok=True)
    with (state_dir(root) / "fetch.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise FetchInProgress(
                f"another fetch is working on {root}",
                detail=f"{state_dir(root) / 'fetch.lock'} is held by a running process",
                fix="wait for it to finish (or stop it), then run this fetch again",
                root=root,
            ) from exc
        yield


def _fetch(models: tuple[Model, ...], root: Path, source: Source, lock_path: Path | None,
           progress: FetchProgress, workers: int) -> FetchReport:
    lock = read_lock(lock_path or package_lock_path())
    stop = threading.Event()  # never set here: only downloads in threads are stopped early
    plans = [_retried(partial(_plan, model, root, source, lock), model.pin.repo, progress, stop)
             for model in models]
    # Every model resolved; now every access, before any large download.
    for plan in plans:
        _retried(partial(source.check_access, plan.model, plan.resolved), plan.model.pin.repo, progress, stop)
    for plan in plans:
        _prepare_area(plan)
    _check_placed(plans, workers, progress)
    todo = [job for plan in plans for job in plan.jobs if job.state == "todo"]
    _check_disk(root, todo)
    total = sum(job.size for plan in plans for job in plan.jobs)
    progress.planned(total, total - sum(job.size - _partial_size(job) for job in todo))
    downloaded = _download_all(plans, source, progress, workers)
    for plan in plans:
        _place(plan, root)
    try:
        staging_dir(root).rmdir()
    except OSError:  # not empty: another model's area is still in use; verify names it
        pass
    resolved_lock = _lock_of(plans)
    write_lock(baked_lock_path(root), resolved_lock)
    _record_inputs(root, models, lock_path, source)
    written = None
    if lock_path is not None and (lock is None or _incomplete(lock, resolved_lock)):
        write_lock(lock_path, _merged(lock, resolved_lock))
        written = lock_path
    notes = [f"{p.model.name}: fetched from {p.resolved.repo} instead of {p.model.repo}; "
             f"the {p.model.licence} still applies ({p.model.licence_url})"
             for p in plans if p.model.overridden]
    return FetchReport(
        root=root,
        models=[FetchedModel(p.model.name, p.resolved.repo, p.resolved.commit, p.model.target_dir(root),
                             sum(j.state == "todo" for j in p.jobs), sum(j.state != "todo" for j in p.jobs))
                for p in plans],
        baked_lock=baked_lock_path(root), lock_written=written, bytes_downloaded=downloaded, notes=notes,
    )


def _record_inputs(root: Path, models: tuple[Model, ...], lock_path: Path | None, source: Source) -> None:
    """Keep what this fetch was run with in the tree, so that verify's fix is the command that
    repairs it (the source-override file may be gone by then: a docker build deletes its copy)."""
    overrides = {m.name: m.pin for m in models if m.pin != RepoPin(m.repo, m.revision)}
    config = baked_sources_path(root)
    if overrides:
        config.write_text("".join(
            f"[{name}]\nrepo = {json.dumps(pin.repo)}\nrevision = {json.dumps(pin.revision)}\n"
            + (f"endpoint = {json.dumps(pin.endpoint)}\n" if pin.endpoint else "") + "\n"
            for name, pin in overrides.items()), encoding="utf-8")
    else:
        config.unlink(missing_ok=True)
    fetch_record_path(root).write_text(json.dumps({
        "from": str(source.root) if isinstance(source, LocalTree) else None,
        "lock": str(lock_path.resolve()) if lock_path else None,
        "config": bool(overrides),  # baked beside this record: the tree may be copied elsewhere
    }, indent=2) + "\n", encoding="utf-8")


def _plan(model: Model, root: Path, source: Source, lock: Lock | None) -> _Plan:
    locked = lock.models.get(model.name) if lock else None
    pinned = locked if locked and locked.repo == model.pin.repo and locked.commit else None
    resolved = source.resolve(model, pinned.commit if pinned and pinned.commit else model.pin.revision)
    area = staging_dir(root) / model.name
    jobs = []
    for path in model.files:
        remote = resolved.files[path]
        expected = remote.sha256
        if locked and path in locked.files:
            want = locked.files[path]
            if want.size != remote.size:
                raise ChecksumMismatch(
                    f"{resolved.repo}/{path} differs from the weights lock",
                    detail=f"the lock says {want.size} bytes, the source has {remote.size} bytes",
                    fix=("if the change upstream is intended, run `trellis-box models lock --lock FILE` and "
                         "commit the new lock; otherwise pin the locked commit or fix the source "
                         "(`from_dir` / `config`)"),
                    path=path, repo=resolved.repo,
                )
            expected = want.sha256
        jobs.append(_Job(model=model, path=path, size=remote.size, expected=expected,
                         target=model.file_target(root, path), staged=area / "tree" / path,
                         partial=area / "partial" / (path + ".part")))
    return _Plan(model=model, resolved=resolved, jobs=jobs, area=area)


def _stamp(plan: _Plan) -> str:
    return plan.resolved.commit or "local"


def _prepare_area(plan: _Plan) -> None:
    # A staging area left by a run against another commit holds bytes of the wrong version.
    marker = plan.area / "commit"
    if plan.area.exists() and (not marker.is_file() or marker.read_text() != _stamp(plan)):
        shutil.rmtree(plan.area)


def _check_placed(plans: list[_Plan], workers: int, progress: FetchProgress) -> None:
    """Mark files already whole at their target or in staging (both hashed: seconds per GB)."""
    candidates = [(j, path, state) for p in plans for j in p.jobs
                  for path, state in ((j.target, "placed"), (j.staged, "staged"))
                  if path.is_file() and path.stat().st_size == j.size]
    if not candidates:
        return
    progress.checking(len(candidates), sum(j.size for j, _, _ in candidates))
    hashes = hash_files([path for _, path, _ in candidates], workers=workers, on_bytes=progress.checked)
    for job, path, state in candidates:  # the target first: a good file in place wins
        digest = hashes[path]
        if job.state == "todo" and (job.expected is None or digest == job.expected):
            job.state, job.sha256 = state, digest


def _partial_size(job: _Job) -> int:
    try:
        return min(job.partial.stat().st_size, job.size)
    except FileNotFoundError:
        return 0


def _free_bytes(path: Path) -> int:
    while not path.exists():
        path = path.parent
    free = shutil.disk_usage(path).free
    limit = os.environ.get(DISK_LIMIT_ENV)
    return min(free, int(limit)) if limit else free


def _check_disk(root: Path, todo: list[_Job]) -> None:
    needed = sum(job.size - _partial_size(job) for job in todo)
    free = _free_bytes(staging_dir(root))
    if needed > free:
        raise NotEnoughDisk(
            f"not enough disk space under {root} for the weights",
            detail=(f"{human_size(needed)} still to download ({len(todo)} files), {human_size(free)} free "
                    f"on the filesystem of {staging_dir(root)}. Nothing was downloaded."),
            fix=(f"free at least {human_size(needed - free)} there, or use a larger disk; for docker build, "
                 "give the builder about twice the image size (~60 GB)"),
            needed=needed, free=free,
        )


def _download_all(plans: list[_Plan], source: Source, progress: FetchProgress, workers: int) -> int:
    # Largest first: the long downloads start at once and the small ones fill the gaps.
    todo = sorted(((p, j) for p in plans for j in p.jobs if j.state == "todo"), key=lambda pj: -pj[1].size)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        futures: list[Future[int]] = [pool.submit(_download, source, p, j, progress, stop) for p, j in todo]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # Ctrl-C: the threads stop at their next chunk, keeping their bytes,
            stop.set()         # and no queued download starts
            for f in futures:
                f.cancel()
            raise
        errors = [e for f in futures if f.done() and not f.cancelled() and (e := f.exception())]
        if errors:
            stop.set()
            for f in futures:
                f.cancel()
            raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
    return sum(f.result() for f in futures)


def _download(source: Source, plan: _Plan, job: _Job, progress: FetchProgress,
              stop: threading.Event) -> int:
    """Download ``job``, resuming after a cut or a slow answer; the bytes this run received."""
    kept = _partial_size(job)
    _retried(lambda: _attempt(source, plan, job, progress, stop), job.key, progress, stop,
             mark=lambda: _partial_size(job))
    return job.size - kept


def _attempt(source: Source, plan: _Plan, job: _Job, progress: FetchProgress, stop: threading.Event) -> None:
    offset, validator = 0, None
    meta = _read_meta(job.meta) if job.partial.is_file() else {}
    if meta.get("size") == job.size and job.partial.stat().st_size <= job.size:
        offset, kept = job.partial.stat().st_size, meta.get("validator")
        validator = kept if isinstance(kept, str) else None
    job.partial.parent.mkdir(parents=True, exist_ok=True)
    (plan.area / "commit").write_text(_stamp(plan))
    with source.open(plan.model, plan.resolved, job.path, offset=offset, validator=validator) as body:
        if body.total is not None and body.total != job.size:
            raise DownloadIncomplete(
                f"{job.key}: the source changed while fetching",
                detail=f"expected {job.size} bytes, the download announces {body.total}",
                fix="run the fetch again", path=job.key,
            )
        job.meta.write_text(json.dumps({"size": job.size, "validator": body.validator}))
        progress.started(job.key, job.size, body.start)
        # Hash while writing (the bytes kept from an earlier run first): no second read of the file.
        digest = hashlib.sha256()
        with job.partial.open("r+b" if body.start else "wb") as out:
            while out.tell() < body.start and (block := out.read(min(1 << 22, body.start - out.tell()))):
                digest.update(block)
            out.seek(body.start)
            out.truncate()
            for chunk in body.chunks:
                if stop.is_set():
                    raise _Stopped(job.key)
                out.write(chunk)
                digest.update(chunk)
                progress.advanced(job.key, len(chunk))
            out.flush()
            os.fsync(out.fileno())
    got = job.partial.stat().st_size
    if got != job.size:
        if got > job.size:
            job.partial.unlink()
        raise (DownloadCut if got < job.size else DownloadIncomplete)(
            f"download of {job.key} ended early" if got < job.size else f"download of {job.key} is too long",
            detail=f"{got} of {job.size} bytes arrived; the connection was cut or the source misbehaved",
            fix="run the same fetch again: it resumes from the bytes already received",
            path=job.key, received=got, size=job.size,
        )
    sha256 = digest.hexdigest()
    if job.expected is not None and sha256 != job.expected:
        job.partial.unlink()
        job.meta.unlink()
        raise ChecksumMismatch(
            f"checksum mismatch for {job.key}; refused",
            detail=f"sha256 {sha256}, expected {job.expected}. Nothing was placed at {job.target}.",
            fix=("if the source changed on purpose, run `trellis-box models lock --lock FILE` and commit the "
                 "new lock; otherwise fetch from a trustworthy source"),
            path=job.key, expected=job.expected, actual=sha256,
        )
    job.staged.parent.mkdir(parents=True, exist_ok=True)
    os.replace(job.partial, job.staged)
    job.meta.unlink()
    job.sha256 = sha256
    progress.finished(job.key)


def _read_meta(path: Path) -> dict[str, object]:
    """A partial download's record; a run killed while writing it leaves it empty or cut, and the
    download then starts over rather than fail every later run."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _place(plan: _Plan, root: Path) -> None:
    model = plan.model
    if all(job.state == "placed" for job in plan.jobs):
        shutil.rmtree(plan.area, ignore_errors=True)
        return
    if model.placement == "files":
        for job in plan.jobs:
            if job.state != "placed":
                job.target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(job.staged, job.target)
    else:
        tree, target = plan.area / "tree", model.target_dir(root)
        for job in plan.jobs:
            if job.state == "placed":  # keep good files of an incomplete directory
                job.staged.parent.mkdir(parents=True, exist_ok=True)
                if not job.staged.exists():
                    os.link(job.target, job.staged)
        _swap_in(tree, target, plan.area / "old")
    shutil.rmtree(plan.area, ignore_errors=True)


def _swap_in(tree: Path, target: Path, old: Path) -> None:
    """Make ``tree`` appear at ``target`` in one rename; an existing ``target`` is moved aside first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(target, old)
        except OSError as exc:
            # overlayfs (docker build) cannot rename a directory from a lower layer; the old
            # directory is incomplete and about to be replaced, so delete it in place instead.
            if exc.errno != errno.EXDEV:
                raise
            shutil.rmtree(target)
    os.rename(tree, target)
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_of(plans: list[_Plan]) -> Lock:
    return Lock({
        p.model.name: LockedModel(
            repo=p.resolved.repo, revision=p.model.pin.revision, commit=p.resolved.commit,
            files={j.path: LockedFile(size=j.size, sha256=j.sha256 or "") for j in p.jobs},
        )
        for p in plans
    })


def _merged(old: Lock | None, resolved: Lock) -> Lock:
    """What was resolved, keeping the old lock's commit where a local tree has none.
    Every file matched the old lock's checksum where it had one, or the fetch refused it."""
    out = dict(resolved.models)
    for name, model in resolved.models.items():
        before = old.models.get(name) if old else None
        if model.commit is None and before is not None and before.repo == model.repo:
            out[name] = LockedModel(model.repo, model.revision, before.commit, model.files)
    return Lock(out)


def _incomplete(lock: Lock, resolved: Lock) -> bool:
    return any(name not in lock.models or set(m.files) - set(lock.models[name].files)
               for name, m in resolved.models.items())

