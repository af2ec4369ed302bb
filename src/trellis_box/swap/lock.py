"""One swap at a time on a host: an ``fcntl`` lock on a file every swap opens.

The kernel drops the lock when its holder dies, so a killed swap never leaves the host locked.
The holder writes who it is into the file, so a refused swap can say who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from trellis_box.errors import SwapLockedError

POLL_SECONDS = 0.2


@contextmanager
def swap_lock(path: Path, *, timeout: float, purpose: str) -> Iterator[None]:
    """Hold the lock at ``path`` for the block; wait at most ``timeout`` seconds for it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise SwapLockedError(
            f"cannot open the swap lock file {path}",
            detail=f"{type(exc).__name__}: {exc.strerror or exc}",
            fix="set swap.lock_file in the GPU containers file (or `lock_file`) to a path every "
                "user who swaps can write",
            path=path,
        ) from exc
    try:
        _acquire(fd, path, timeout)
        holder = {"pid": os.getpid(), "purpose": purpose,
                  "since": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
    raise SwapLockedError(
        "another swap is running on this host",
        detail=f"lock {path} is held by {_holder(fd)}; waited {timeout:g} s",
        fix="wait for it to finish, or give `lock_timeout` to wait for it "
            "(swap.lock_timeout in the GPU containers file)",
        path=path,
    )


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} ({info['purpose']}, since {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "a process that has not written its name yet"
