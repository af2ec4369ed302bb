"""The storage protocol: list, read, exists/size, write-whole; and the one place that picks an
implementation from a location (``s3://bucket/prefix`` or a folder).

Names are relative to the location (``chair.glb``); a listing holds the objects directly under
it, like a folder's files, sorted. ``write`` makes a name appear whole or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

S3_SCHEME = "s3://"


class Storage(Protocol):
    def url(self, name: str) -> str:
        """Where ``name`` is, for people and reports (a path or ``s3://bucket/key``)."""
        ...

    def list(self) -> list[str]:
        """The names directly under the location, sorted; empty when there is nothing there."""
        ...

    def read(self, name: str) -> bytes:
        """The whole object; raises ``FileNotFoundError`` when it is not there."""
        ...

    def size(self, name: str) -> int | None:
        """Bytes of ``name``, or ``None`` when it does not exist."""
        ...

    def exists(self, name: str) -> bool: ...

    def write(self, name: str, source: Path) -> None:
        """Make ``name`` hold the bytes of the local file ``source``, whole or not at all."""
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
