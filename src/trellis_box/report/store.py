"""Where a batch's files are: a listing of names and a way to read and write them.

The report reads the per-input ``<name>.json`` files, their GLBs and cutouts only through a
:class:`BatchStore`, and writes ``report.html`` and ``report-files/`` through it too, so an
object store (S3: list, get and put objects under a prefix) plugs in beside :class:`LocalFolder`.
Names are relative, ``/``-separated paths: the same names are the report's links.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from trellis_box.batch.files import write_bytes


class BatchStore(Protocol):
    """The files of one batch output folder, by relative name."""

    def names(self, folder: str = "") -> list[str]:
        """The files directly in ``folder`` ("" is the top, else a name ending in "/"), not
        those of folders below it; an absent folder has none."""
        ...

    def read(self, name: str) -> bytes: ...

    def write(self, name: str, data: bytes) -> None:
        """Replace ``name`` whole (readers never see half a file)."""
        ...

    def modified(self, name: str) -> float | None:
        """When ``name`` last changed (seconds since the epoch), or ``None`` if it is absent."""
        ...

    def local_path(self, name: str) -> contextlib.AbstractContextManager[Path]:
        """A file on this machine with ``name``'s content, for tools that read paths."""
        ...

    def location(self, name: str) -> str:
        """How to tell a person where ``name`` is (a path, a URL)."""
        ...


class LocalFolder:
    """A batch output folder on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def names(self, folder: str = "") -> list[str]:
        try:
            with os.scandir(self.root / folder) as entries:
                return sorted(e.name for e in entries if e.is_file())
        except FileNotFoundError:
            return []

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def write(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, data)

    def modified(self, name: str) -> float | None:
        try:
            return (self.root / name).stat().st_mtime
        except OSError:
            return None

    @contextlib.contextmanager
    def local_path(self, name: str) -> Iterator[Path]:
        yield self.root / name

    def location(self, name: str) -> str:
        return str(self.root / name)
