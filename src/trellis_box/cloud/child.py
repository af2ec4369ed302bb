"""An array child: its shard of the manifest, generated from S3 to S3 by a serve of its own.

``trellis-box batch child MANIFEST`` is the job definition's command. It takes shard
``AWS_BATCH_JOB_ARRAY_INDEX`` (0 for a job of one shard), starts serve in this process (preflight,
ComfyUI, warm-up), runs the shard through the batch engine once serve is ready, stops ComfyUI and
exits. Exit 0: the shard was processed, failed inputs included (each has its report). Non-zero:
the worker broke (ComfyUI died or went away, S3 refused a write, a signal), so Batch runs the
child again, and that attempt skips every input already done.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from trellis_box.batch.engine import BatchOptions, BatchReport, Done, Event, Observer, run_items
from trellis_box.batch.sources import fetch, resolve
from trellis_box.cloud.shard import Manifest, read_manifest, select
from trellis_box.errors import (
    AwsCredentialsMissingError,
    ComfyUnreachableError,
    OutputWriteError,
    ShardError,
    StorageMissingError,
    StorageRequestError,
)
from trellis_box.serve.settings import ServeSettings
from trellis_box.serve.supervise import Emit, Server
from trellis_box.storage.s3 import S3Storage

INDEX_VARIABLE = "AWS_BATCH_JOB_ARRAY_INDEX"
EXIT_DONE = 0
#: The worker broke; Batch retries the child (the job definition's retry strategy).
EXIT_BROKEN = 1
#: Errors of the worker, not of an input: the shard cannot go on here.
WORKER_ERRORS = (ComfyUnreachableError, StorageRequestError, StorageMissingError,
                 AwsCredentialsMissingError, OutputWriteError)


@dataclass(frozen=True)
class Shard:
    manifest: Manifest
    index: int


def shard_index(env: Mapping[str, str], shards: int) -> int:
    value = env.get(INDEX_VARIABLE)
    if value is None:
        if shards == 1:
            return 0
        raise ShardError(f"{INDEX_VARIABLE} is not set and the job has {shards} shards",
                         fix="run the child as an AWS Batch array job (trellis-box batch submit), or "
                             f"set {INDEX_VARIABLE} to the shard to run")
    try:
        return int(value)
    except ValueError:
        raise ShardError(f"{INDEX_VARIABLE}={value!r} is not a number",
                         fix="leave it to AWS Batch, which sets it for each child") from None


def outcome_code(report: BatchReport) -> int:
    """0 when the shard was processed; non-zero when the worker broke (or was interrupted)."""
    if report.interrupted:
        return EXIT_BROKEN
    broken = [o for o in report.outcomes if isinstance(o.error, WORKER_ERRORS)]
    return EXIT_BROKEN if broken else EXIT_DONE


async def run_shard(server: str, shard: Shard, *, on_event: Observer | None = None,
                    on_start: Callable[[int], None] | None = None) -> int:
    """Shard ``shard.index`` of the manifest through the engine against ``server``."""
    m = shard.manifest
    with tempfile.TemporaryDirectory(prefix="trellis-box-child-") as tmp:
        staging = Path(tmp)
        # Named over the whole listing: the same names a single run over every input gives.
        items = select(resolve(m.inputs, staging / "in", out=m.out), m.shards, shard.index)
        if on_start is not None:
            on_start(len(items))
        await asyncio.to_thread(fetch, items)
        options = BatchOptions(out_dir=staging / "out", workflow=m.options(),
                               auto_resolution=m.auto_resolution, job_timeout=m.job_timeout,
                               outputs=S3Storage.from_url(m.out))
        report = await run_items(server, items, options, on_event=on_event)
    return outcome_code(report)


def run_child(manifest_url: str, settings: ServeSettings, emit: Emit,
              env: Mapping[str, str] | None = None) -> int:
    """The child's whole life: manifest, shard, serve, generate, stop. Returns the exit code."""
    manifest = read_manifest(manifest_url)
    shard = Shard(manifest, shard_index(os.environ if env is None else env, manifest.shards))
    emit("shard", index=shard.index, shards=manifest.shards, manifest=manifest_url)

    def on_event(event: Event) -> None:
        if isinstance(event, Done):
            o = event.outcome
            emit("input", name=o.item.name, status=o.status,
                 error=o.error.reference if o.error else None)

    async def job() -> int:
        code = await run_shard(settings.base_url, shard, on_event=on_event,
                               on_start=lambda n: emit("shard_inputs", inputs=n))
        emit("shard_done", index=shard.index, exit_code=code)
        return code

    return Server(settings, emit).run(then=job)
