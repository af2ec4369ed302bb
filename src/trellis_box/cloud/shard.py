"""Deterministic sharding, and the manifest that fixes what a job's shards are.

The manifest is written once, at submit: the inputs (every S3 object, in listing order), where
the outputs go, the shard count and the generation parameters. Every child reads the same one,
so a file added to the input prefix while the job runs changes nothing, and shard ``i`` is the
same inputs in every attempt of child ``i`` (a retried child resumes its own work).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from trellis_box.comfyui.workflow import WorkflowOptions
from trellis_box.errors import ShardError, UsageError
from trellis_box.storage.s3 import S3Storage, parse_url

#: AWS Batch's largest array job.
MAX_SHARDS = 10_000
MANIFEST_VERSION = 1
#: Under the output prefix; listing the prefix for results never sees it.
MANIFEST_FOLDER = ".trellis-box/jobs"

T = TypeVar("T")


def shard_count(inputs: int, *, shards: int | None = None, per_shard: int | None = None) -> int:
    """How many shards: ``shards`` as asked, or enough for ``per_shard`` inputs each; never more
    shards than inputs (a child with nothing to do still pays its cold start)."""
    if (shards is None) == (per_shard is None):
        raise UsageError("give either `shards` or `per_shard`",
                         fix="`shards` N splits the inputs into N children; `per_shard` K gives "
                             "each child about K inputs")
    if (shards or per_shard or 0) < 1:
        raise UsageError("`shards` and `per_shard` must be at least 1",
                         fix="pass a positive number", shards=shards, per_shard=per_shard)
    count = shards if shards is not None else math.ceil(inputs / (per_shard or 1))
    count = min(count, inputs)
    if count > MAX_SHARDS:
        raise UsageError(f"{count} shards is more than an AWS Batch array job holds ({MAX_SHARDS})",
                         fix=f"pass `per_shard` {math.ceil(inputs / MAX_SHARDS)} or more",
                         shards=count)
    return count


def bounds(total: int, shards: int, index: int) -> tuple[int, int]:
    """Shard ``index``'s slice of ``total`` inputs: contiguous, sizes differing by one at most,
    the larger ones first; together the shards cover every input exactly once."""
    if not 0 <= index < shards:
        raise ShardError(f"shard index {index} is outside 0..{shards - 1}",
                         fix="AWS_BATCH_JOB_ARRAY_INDEX must be below the array size the job was "
                             "submitted with", index=index, shards=shards)
    size, extra = divmod(total, shards)
    start = index * size + min(index, extra)
    return start, start + size + (1 if index < extra else 0)


def select(items: list[T], shards: int, index: int) -> list[T]:
    start, end = bounds(len(items), shards, index)
    return items[start:end]


@dataclass(frozen=True)
class Manifest:
    inputs: list[str]
    out: str
    shards: int
    workflow: dict[str, Any] = field(default_factory=lambda: WorkflowOptions().as_dict())
    auto_resolution: bool = False
    job_timeout: float = 3600.0
    version: int = MANIFEST_VERSION

    def options(self) -> WorkflowOptions:
        return WorkflowOptions(**self.workflow)

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def manifest_url(out: str, job_name: str) -> str:
    return f"{out.rstrip('/')}/{MANIFEST_FOLDER}/{job_name}.json"


def write_manifest(manifest: Manifest, url: str) -> None:
    bucket, key = parse_url(url)
    parent, _, name = key.rpartition("/")
    with tempfile.TemporaryDirectory(prefix="trellis-box-") as tmp:
        path = Path(tmp) / name
        path.write_text(manifest.as_json())
        S3Storage(bucket, parent).write(name, path)


def read_manifest(url: str) -> Manifest:
    bucket, key = parse_url(url)
    parent, _, name = key.rpartition("/")
    try:
        data = json.loads(S3Storage(bucket, parent).read(name))
    except FileNotFoundError:
        raise ShardError(f"the job's manifest {url} does not exist",
                         fix="submit the job again with `trellis-box batch submit` (it writes the "
                             "manifest before the job starts)", url=url) from None
    except ValueError as exc:
        raise ShardError(f"the job's manifest {url} is not JSON", detail=str(exc),
                         fix="submit the job again with `trellis-box batch submit`", url=url) from exc
    if data.get("version") != MANIFEST_VERSION:
        raise ShardError(f"the job's manifest {url} has version {data.get('version')!r}, this "
                         f"trellis-box reads version {MANIFEST_VERSION}",
                         fix="run the same trellis-box version in the image as the one that submitted",
                         url=url)
    return Manifest(**data)
