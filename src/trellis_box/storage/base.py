"""The storage protocol: list, read, exists/size, modified time, write-whole, a local copy; and
the one place that picks an implementation from a location (``s3://bucket/prefix`` or a folder).

Names are relative, ``/``-separated paths under the location (``chair.glb``,
``report-files/thumbnails/chair.png``): the same names are the report's links. A listing holds
the objects directly in one folder, like a folder's files, sorted. Writes make a name appear whole
or not at all.
"""

from __future__ import annotations

import contextlib
import mimetypes
from pathlib import Path, PurePosixPath
from typing import Protocol

S3_SCHEME = "s3://"

#: The types a browser needs to open a batch's files from object storage or our http server
#: (an S3 object without one is ``binary/octet-stream``: report.html would download, not open).
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript",
                 ".glb": "model/gltf-binary", ".webp": "image/webp", ".png": "image/png",
                 ".json": "application/json", ".txt": "text/plain; charset=utf-8"}


def content_type(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class Storage(Protocol):
    def url(self, name: str) -> str:
        """Where ``name`` is, for people and reports (a path or ``s3://bucket/key``)."""
        ...

    def list(self, folder: str = "") -> list[str]:
        """The names directly in ``folder`` ("" is the top, else a name ending in "/"), sorted,
        not those of folders below it; empty when there is nothing there."""
        ...

    def read(self, name: str) -> bytes:
        """The whole object; raises ``FileNotFoundError`` when it is not there."""
        ...

    def size(self, name: str) -> int | None:
        """Bytes of ``name``, or ``None`` when it does not exist."""
        ...

    def exists(self, name: str) -> bool: ...

    def modified(self, name: str) -> float | None:
        """When ``name`` last changed (seconds since the epoch), or ``None`` when it is absent."""
        ...

    def write(self, name: str, source: Path) -> None:
        """Make ``name`` hold the bytes of the local file ``source``, whole or not at all."""
        ...

    def write_bytes(self, name: str, data: bytes) -> None:
        """Make ``name`` hold ``data``, whole or not at all."""
        ...

    def local_copy(self, name: str) -> contextlib.AbstractContextManager[Path]:
        """A file on this machine with ``name``'s content while the context lasts, for tools
        that read paths (the thumbnail renderer)."""
        ...


def is_remote(location: str | Path) -> bool:
    return str(location).startswith(S3_SCHEME)


def open_storage(location: str | Path) -> Storage:
    """The storage at ``location``: ``s3://bucket[/prefix]`` or a local folder."""
    if is_remote(location):
        from trellis_box.storage.s3 import S3Storage

        return S3Storage.from_url(str(location))
    from trellis_box.storage.local import LocalStorage

    return LocalStorage(Path(location))
