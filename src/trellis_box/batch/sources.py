"""Inputs and outputs anywhere a folder goes: local paths or ``s3://bucket/prefix``.

The engine works on local files. Remote inputs are listed and named first (names over the whole
listing, so a shard of it names its inputs as a run over all of it would), then copied into a
staging folder; remote outputs are written to a staging folder and handed to the storage one
input at a time, the report last (:class:`~trellis_box.batch.engine.BatchOptions` ``outputs``).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from trellis_box.batch.engine import BatchOptions
from trellis_box.batch.files import Item, expand, is_image_name, name_items
from trellis_box.storage import is_remote
from trellis_box.storage.s3 import S3Storage, parse_url, s3_client

#: Inputs copied from S3 at once.
FETCHERS = 8


def resolve(inputs: Sequence[str], staging: Path, *, out: str | None = None) -> list[Item]:
    """Every input named; a remote one's ``source`` is where :func:`fetch` will put it.

    A local directory, or an S3 prefix, stands for its image files directly under it, sorted;
    our cutouts are not inputs when it is also the output location.
    """
    pairs: list[tuple[Path, str | None]] = []
    for given in inputs:
        if is_remote(given):
            pairs += [(_staged(staging, url), url) for url in remote_images(given, out=out)]
        else:
            local_out = Path(out) if out is not None and not is_remote(out) else None
            pairs += [(p, None) for p in expand([Path(given)], out_dir=local_out)]
    return name_items(pairs, looked_in=[str(i) for i in inputs])


def remote_images(url: str, *, out: str | None = None) -> list[str]:
    """``s3://b/photo.jpg`` itself, or the image objects directly under ``s3://b/prefix``."""
    bucket, key = parse_url(url)
    if is_image_name(key):
        return [f"s3://{bucket}/{key}"]
    store = S3Storage(bucket, key)
    skip = out is not None and out.rstrip("/") == store.url().rstrip("/")
    return [store.url(n) for n in store.list() if is_image_name(n, skip_cutouts=skip)]


def _staged(staging: Path, url: str) -> Path:
    # A folder per object: two objects of one basename under different prefixes stay apart.
    return staging / hashlib.sha256(url.encode()).hexdigest()[:16] / url.rsplit("/", 1)[-1]


def fetch(items: Sequence[Item]) -> None:
    """Copy the remote inputs among ``items`` to their ``source``. One that is gone stays
    missing locally and fails as that input (its report says so); the others go on."""

    remote = [i for i in items if i.origin is not None]
    if not remote:
        # A local batch never touches AWS: no client, no read of the AWS config files.
        return
    client = s3_client()  # thread-safe, and one is much cheaper than one per object

    def one(item: Item) -> None:
        assert item.origin is not None
        bucket, key = parse_url(item.origin)
        parent, _, name = key.rpartition("/")
        try:
            data = S3Storage(bucket, parent, client=client).read(name)
        except FileNotFoundError:
            return
        item.source.parent.mkdir(parents=True, exist_ok=True)
        item.source.write_bytes(data)

    with ThreadPoolExecutor(FETCHERS) as pool:
        list(pool.map(one, remote))


@contextlib.contextmanager
def locations(inputs: Sequence[str], out: str, options: BatchOptions
              ) -> Iterator[tuple[list[Item], BatchOptions]]:
    """The planned inputs and the options for ``out``, with a staging folder while it lasts."""
    with tempfile.TemporaryDirectory(prefix="trellis-box-") as tmp:
        staging = Path(tmp)
        if is_remote(out):
            outputs = S3Storage.from_url(out)
            outputs.check()
            options = replace(options, out_dir=staging / "out", outputs=outputs)
        else:
            options = replace(options, out_dir=Path(out))
        items = resolve(inputs, staging / "in", out=out)
        fetch(items)
        yield items, options
