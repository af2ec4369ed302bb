"""Where a fetch reads weights from: the ``Source`` protocol and the types every source shares.

Two sources implement it: ``hub.Hub`` (the Hugging Face Hub or a mirror, the only importer of
huggingface_hub) and ``local_tree.LocalTree`` (``models fetch --from DIR``, air-gapped). This module
imports neither, so the air-gapped path never loads huggingface_hub or its HTTP stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from trellis_box.weights.catalog import Model


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # known without downloading only for the Hub's LFS files


@dataclass(frozen=True)
class Resolved:
    """A model's pin resolved by a source: a commit, with the catalog's files as the source has them."""

    repo: str
    revision: str
    commit: str | None  # None for a local tree (--from)
    files: dict[str, RemoteFile]


@dataclass
class Body:
    """An open download: ``start`` is where ``chunks`` begin (0 when the source restarted it)."""

    start: int
    total: int | None
    validator: str | None
    chunks: Iterator[bytes]


class Source(Protocol):
    """What fetch asks of a source: resolve a model's pin, check access, stream a file from an offset."""

    def resolve(self, model: Model, revision: str) -> Resolved: ...
    def check_access(self, model: Model, resolved: Resolved) -> None: ...
    def open(self, model: Model, resolved: Resolved, path: str, *, offset: int = 0,
             validator: str | None = None) -> AbstractContextManager[Body]: ...
