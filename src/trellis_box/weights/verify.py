"""Offline check of the weights under a ComfyUI root against the catalog and the lock.

Quick: every file present with the locked size. Full: also its sha256, files hashed in parallel
threads (hashlib releases the GIL on large buffers). Both flag partial downloads and staging
leftovers. Returns a report; prints nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from trellis_box.errors import LockMissing, WeightsNotVerified
from trellis_box.weights import standin
from trellis_box.weights.catalog import (
    Model,
    baked_lock_path,
    baked_sources_path,
    comfy_root,
    fetch_record_path,
    load_catalog,
    staging_dir,
)
from trellis_box.weights.lock import Lock, package_lock_path
from trellis_box.weights.lock import read as read_lock

BUFFER = 8 << 20
PARTIAL_SUFFIXES = (".part", ".part.json", ".incomplete")


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            if on_bytes:
                on_bytes(n)
    return h.hexdigest()


def hash_files(paths: Sequence[Path], *, workers: int | None = None,
               on_bytes: Callable[[int], None] | None = None) -> dict[Path, str]:
    """sha256 of each path, hashed in parallel; ``on_bytes(n)`` after each buffer (from the threads)."""
    if not paths:
        return {}
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        return dict(zip(paths, pool.map(lambda p: sha256_file(p, on_bytes), paths), strict=True))


@dataclass(frozen=True)
class Problem:
    kind: str  # missing | truncated | oversized | corrupt | unlocked | partial | staging | stand-in
    path: Path
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": str(self.path), "detail": self.detail}


@dataclass(frozen=True)
class VerifyReport:
    root: Path
    full: bool
    lock: Path | None
    files: int
    bytes: int
    problems: tuple[Problem, ...]
    lock_given: bool = False  # the lock was given, rather than found
    weights_mode: standin.WeightsMode = "real"

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "root": str(self.root), "full": self.full,
                "lock": str(self.lock) if self.lock else None, "files": self.files, "bytes": self.bytes,
                "weights_mode": self.weights_mode, "problems": [p.to_dict() for p in self.problems]}

    def summary(self) -> str:
        """What was checked, in words: quick mode reads sizes, never contents."""
        if self.weights_mode == "stand-in":
            return (f"{self.files} files present: {standin.LABEL} (random values, not the real models; "
                    "only their presence is checked)")
        if self.full:
            return f"{self.files} files ({human_size(self.bytes)}) match the sha256 in {self.lock}"
        if self.lock is None:
            return f"{self.files} files present; no lock, so their sizes and contents are unchecked"
        return (f"{self.files} files ({human_size(self.bytes)}) present with the sizes in {self.lock}; "
                "contents not hashed (`models verify --full` does)")

    def repair_command(self) -> str:
        """The fetch that repairs this tree: the sources and lock it was fetched with."""
        return repair_command(self.root, self.lock if self.lock_given else None)

    def raise_for_problems(self) -> None:
        if self.ok:
            return
        kinds = sorted({p.kind for p in self.problems})
        if kinds == ["stand-in"]:
            raise WeightsNotVerified(
                f"weights under {self.root} are {standin.LABEL}, not the real models",
                detail=self.problems[0].detail,
                fix=f"fetch the real weights (`trellis-box models fetch --comfy-root {self.root}`) and "
                    f"delete {self.problems[0].path}; for measurement only, pass `allow_stand_in`",
                kinds=kinds,
            )
        raise WeightsNotVerified(
            f"weights under {self.root} failed verification: {len(self.problems)} problem(s)",
            detail="\n".join(f"{p.kind}: {p.path} ({p.detail})" for p in self.problems),
            fix=(f"run `{self.repair_command()}` to repair (it resumes and replaces damaged files), "
                 "then `trellis-box models verify --full`"),
            kinds=kinds,
        )


def repair_command(root: Path, lock: Path | None = None) -> str:
    """``models fetch`` for ``root`` with the local tree, source overrides and lock its last fetch
    used (``lock``, when given, wins: the lock the tree was just checked against)."""
    try:
        record = json.loads(fetch_record_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    record = record if isinstance(record, dict) else {}
    args = ["trellis-box", "models", "fetch", "--comfy-root", str(root)]
    config = str(baked_sources_path(root)) if record.get("config") is True else None
    for flag, value in (("--from", record.get("from")), ("--config", config),
                        ("--lock", str(lock) if lock else record.get("lock"))):
        if isinstance(value, str):
            args += [flag, value]
    return shlex.join(args)


def human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def find_lock(root: Path) -> Path | None:
    """The lock to check against: the one the fetch baked into the tree, else the package lock."""
    for path in (baked_lock_path(root), package_lock_path()):
        if path.is_file():
            return path
    return None


def verify(comfy_root_dir: Path, *, full: bool = False, lock_path: Path | None = None,
           models: tuple[Model, ...] | None = None, workers: int | None = None,
           on_hashing: Callable[[int], Callable[[int], None]] | None = None,
           allow_stand_in: bool = False) -> VerifyReport:
    """Check the tree; with ``full``, ``on_hashing(total_bytes)`` may return a callback that is given
    each hashed buffer's size (a progress bar).

    Stand-in weights (:mod:`standin`) are a problem unless ``allow_stand_in``; either way only their
    presence is checked, since the lock's sizes and hashes are the real files'.
    """
    root = comfy_root(comfy_root_dir)
    weights_mode = standin.mode(root)
    if weights_mode == "stand-in":
        full, lock_path = False, None
    models = models or load_catalog()
    given = lock_path is not None
    looked = [lock_path] if lock_path else [baked_lock_path(root), package_lock_path()]
    lock_path = lock_path or (find_lock(root) if weights_mode == "real" else None)
    lock = read_lock(lock_path) if lock_path else None
    if full and lock is None:
        raise LockMissing(
            f"no weights lock to check {root} against",
            detail="looked for " + " and ".join(str(p) for p in looked),
            fix="run `trellis-box models fetch` (it writes both), or pass `lock_path` FILE",
            root=root,
        )
    problems: list[Problem] = []
    to_hash: list[tuple[Path, str]] = []
    files = total = 0
    for model in models:
        for path, size, sha in _expected(model, lock):
            target = model.file_target(root, path)
            files += 1
            if not target.is_file():
                problems.append(Problem("missing", target, f"{model.title} needs it; not on disk"))
                continue
            actual = target.stat().st_size
            total += actual
            if size is not None and actual != size:
                kind = "truncated" if actual < size else "oversized"
                problems.append(Problem(kind, target, f"{actual} bytes, the lock says {size}"))
            elif full and sha is None:
                problems.append(Problem("unlocked", target, f"no sha256 in {lock_path}"))
            elif full and sha is not None:
                to_hash.append((target, sha))
    on_bytes = on_hashing(sum(p.stat().st_size for p, _ in to_hash)) if on_hashing and to_hash else None
    digests = hash_files([p for p, _ in to_hash], workers=workers, on_bytes=on_bytes)
    for target, sha in to_hash:
        if digests[target] != sha:
            problems.append(Problem("corrupt", target, f"sha256 {digests[target]}, the lock says {sha}"))
    problems += _leftovers(root, models)
    if weights_mode == "stand-in" and not allow_stand_in:
        problems.insert(0, Problem("stand-in", standin.marker_path(root),
                                   f"{standin.LABEL}: random values, not the real models (the GPU harness "
                                   "wrote them)"))
    return VerifyReport(root=root, full=full, lock=lock_path if lock else None, files=files, bytes=total,
                        problems=tuple(problems), lock_given=given, weights_mode=weights_mode)


def _expected(model: Model, lock: Lock | None) -> list[tuple[str, int | None, str | None]]:
    locked = lock.models.get(model.name) if lock else None
    out = []
    for path in model.files:
        entry = locked.files.get(path) if locked else None
        out.append((path, entry.size if entry else None, entry.sha256 if entry else None))
    return out


def _leftovers(root: Path, models: tuple[Model, ...]) -> list[Problem]:
    problems = []
    for model in models:
        target = model.target_dir(root)
        if not target.is_dir():
            continue
        for dirpath, _, names in os.walk(target):
            for name in names:
                if name.endswith(PARTIAL_SUFFIXES):
                    problems.append(Problem("partial", Path(dirpath) / name,
                                            "a partial download next to the model; delete it"))
    staging = staging_dir(root)
    if staging.is_dir():
        for dirpath, _, names in os.walk(staging):
            for name in names:
                problems.append(Problem("staging", Path(dirpath) / name,
                                        "left by an interrupted fetch; run the fetch again to finish, "
                                        "or delete the staging directory"))
    return problems
