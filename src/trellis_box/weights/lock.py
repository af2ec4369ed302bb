"""The weights lock: each model's resolved commit and every file's size and sha256.

Kept in the repository (``data/weights.lock.json``, written by ``models lock --lock`` or copied from
a baked tree, never by fetch) and, after a fetch, in the baked tree
(``<comfy-root>/models/.trellis-box/weights.lock.json``). Shape::

    {"version": 1,
     "models": {"dinov3": {"repo": "facebook/dinov3-vitl16-pretrain-lvd1689m",
                           "revision": "main", "commit": "<40 hex, or null from a local tree>",
                           "files": {"config.json": {"size": 693, "sha256": "<64 hex>"}}}}}
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trellis_box.errors import LockInvalid

VERSION = 1
UNLOCKED = "unlocked"


@dataclass(frozen=True)
class LockedFile:
    size: int
    sha256: str


@dataclass(frozen=True)
class LockedModel:
    repo: str
    revision: str
    commit: str | None
    files: dict[str, LockedFile]


@dataclass(frozen=True)
class Lock:
    models: dict[str, LockedModel] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "models": {
                name: {
                    "repo": m.repo,
                    "revision": m.revision,
                    "commit": m.commit,
                    "files": {p: {"size": f.size, "sha256": f.sha256} for p, f in sorted(m.files.items())},
                }
                for name, m in sorted(self.models.items())
            },
        }

    def canonical(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def package_lock_path() -> Path:
    """The lock shipped with the package (``trellis_box/data``): committed in the repository, only
    ever read by trellis-box."""
    return Path(__file__).resolve().parent.parent / "data" / "weights.lock.json"


def _parse(raw: Any) -> Lock:
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        raise ValueError(f"expected an object with \"version\": {VERSION}")
    models = {}
    for name, m in raw["models"].items():
        files = {p: LockedFile(size=int(f["size"]), sha256=str(f["sha256"])) for p, f in m["files"].items()}
        models[name] = LockedModel(repo=m["repo"], revision=m["revision"], commit=m["commit"], files=files)
    return Lock(models=models)


def read(path: Path) -> Lock | None:
    """The lock at ``path``, or None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return _parse(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LockInvalid(
            f"weights lock {path} is not valid",
            detail=f"{type(exc).__name__}: {exc}",
            fix=f"restore it from git, or delete it and run `trellis-box models lock --lock {path}`",
            path=path,
        ) from exc


def write(path: Path, lock: Lock) -> None:
    """Write ``lock`` atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(lock.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def lock_digest(path: Path | None = None) -> str:
    """``sha256:<hex>`` of the canonical lock at ``path`` (default: the package lock), or ``unlocked``."""
    lock = read(path or package_lock_path())
    if lock is None:
        return UNLOCKED
    return "sha256:" + hashlib.sha256(lock.canonical()).hexdigest()
