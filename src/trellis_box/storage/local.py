"""A local folder as storage: writes are a temporary file in the folder renamed into place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from trellis_box.errors import OutputWriteError


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, name: str) -> str:
        return str(self.root / name)

    def list(self) -> list[str]:
        try:
            return sorted(p.name for p in self.root.iterdir() if p.is_file())
        except FileNotFoundError:
            return []

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def size(self, name: str) -> int | None:
        try:
            return (self.root / name).stat().st_size
        except OSError:
            return None

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def write(self, name: str, source: Path) -> None:
        target = self.root / name
        if source.resolve() == target.resolve():
            return  # written in place already (the batch engine's own output folder)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputWriteError(
                f"cannot write {target}", detail=f"{exc.strerror or exc}",
                fix="free disk space or make the output directory writable, then run the same "
                    "command again: finished outputs are kept and skipped",
                path=str(target)) from exc
