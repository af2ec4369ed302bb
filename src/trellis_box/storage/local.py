"""A local folder as storage: writes are a temporary file in the folder renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from trellis_box.errors import OutputWriteError


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, name: str) -> str:
        return str(self.root / name)

    def list(self, folder: str = "") -> list[str]:
        try:
            with os.scandir(self.root / folder) as entries:
                return sorted(e.name for e in entries if e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def _stat(self, name: str) -> os.stat_result | None:
        try:
            return (self.root / name).stat()
        except OSError:
            return None

    def size(self, name: str) -> int | None:
        stat = self._stat(name)
        return None if stat is None else stat.st_size

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def modified(self, name: str) -> float | None:
        stat = self._stat(name)
        return None if stat is None else stat.st_mtime

    def write(self, name: str, source: Path) -> None:
        if source.resolve() == (self.root / name).resolve():
            return  # written in place already (the batch engine's own output folder)
        self._replace(name, lambda tmp: shutil.copyfile(source, tmp))

    def write_bytes(self, name: str, data: bytes) -> None:
        self._replace(name, lambda tmp: tmp.write_bytes(data))

    @contextlib.contextmanager
    def local_copy(self, name: str) -> Iterator[Path]:
        yield self.root / name

    def _replace(self, name: str, fill: Callable[[Path], object]) -> None:
        target = self.root / name
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fill(tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputWriteError(
                f"cannot write {target}", detail=f"{exc.strerror or exc}",
                fix="free disk space or make the output directory writable, then run the same "
                    "command again: finished outputs are kept and skipped",
                path=str(target)) from exc
