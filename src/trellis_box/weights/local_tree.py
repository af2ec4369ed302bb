"""``models fetch --from DIR``: an air-gapped source laid out like the repositories."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trellis_box.errors import LocalSourceMissing
from trellis_box.weights.catalog import Model
from trellis_box.weights.sources import Body, RemoteFile, Resolved


class LocalTree:
    """An air-gapped copy laid out like the repositories, ``DIR/<repo_id>/<file>``."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    def resolve(self, model: Model, revision: str) -> Resolved:
        base = self.root / model.pin.repo
        missing = [f for f in model.files if not (base / f).is_file()]
        if missing:
            raise LocalSourceMissing(
                f"`from_dir` {self.root} lacks files of {model.pin.repo}",
                detail="missing: " + ", ".join(str(base / f) for f in missing),
                fix=f"copy the repository's files to {base}/ (same relative paths as on the Hub)",
                missing=[str(base / f) for f in missing],
            )
        files = {f: RemoteFile(f, (base / f).stat().st_size, None) for f in model.files}
        return Resolved(repo=model.pin.repo, revision=revision, commit=None, files=files)

    def check_access(self, model: Model, resolved: Resolved) -> None:
        return None

    @contextmanager
    def open(self, model: Model, resolved: Resolved, path: str, *, offset: int = 0,
             validator: str | None = None) -> Iterator[Body]:
        file = self.root / resolved.repo / path
        stat = file.stat()
        current = f"{stat.st_size}-{stat.st_mtime_ns}"
        start = offset if validator == current else 0
        with file.open("rb") as f:
            f.seek(start)
            yield Body(start=start, total=stat.st_size, validator=current,
                       chunks=iter(lambda: f.read(1 << 20), b""))
