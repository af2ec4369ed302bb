"""A PNG thumbnail of each GLB, rendered on the CPU by f3d (VTK's offscreen renderer), optional.

f3d is an extra (``pip install 'trellis-box[thumbnails]'``): without it the report shows a
placeholder. Rendering runs in child processes (:mod:`render_worker`), one f3d engine each: a
renderer crash or a slow model never takes the caller (the batch's process) with it, several
cores share the work, and f3d's bundled libraries stay apart from ours.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from trellis_box.errors import ThumbnailsUnavailableError
from trellis_box.storage import Storage

SIZE = 384
INSTALL = "pip install 'trellis-box[thumbnails]'"
MESA_FIX = ("f3d renders offscreen through EGL or GLX: install Mesa (apt-get install libegl1 "
            "libegl-mesa0 libgl1-mesa-dri), or run `trellis-box report DIR --no-thumbnails`")


@dataclass
class Rendered:
    done: list[str] = field(default_factory=list)
    #: GLB name -> why its thumbnail could not be made.
    failed: dict[str, str] = field(default_factory=dict)


def check_available() -> None:
    if importlib.util.find_spec("f3d") is None:
        raise ThumbnailsUnavailableError(
            "thumbnails are not rendered: the f3d renderer is not installed",
            detail="the report shows a placeholder instead of each model's picture",
            fix=f"{INSTALL}, then run: trellis-box report DIR")


class _Worker:
    """One render_worker process; started again after a crash (a model that kills it fails alone)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.log: IO[str] = tempfile.TemporaryFile("w+")

    def _start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-m", "trellis_box.report.render_worker", str(SIZE)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                   text=True)
        if _answer(process) != {"ready": True}:
            process.wait()
            self.log.seek(0)
            raise ThumbnailsUnavailableError(
                "the f3d renderer cannot start on this machine",
                detail=self.log.read().strip()[-2000:] or f"exit status {process.returncode}",
                fix=MESA_FIX)
        return process

    def render(self, glb: Path, png: Path) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"glb": str(glb), "png": str(png)}) + "\n")
        self.process.stdin.flush()
        answer = _answer(self.process)
        if answer is None:
            self.process.wait()
            raise RuntimeError(f"the renderer crashed (exit status {self.process.returncode})")
        if "error" in answer:
            raise RuntimeError(answer["error"])

    def close(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
            self.process.wait()
        self.log.close()


def _answer(process: subprocess.Popen[str]) -> dict[str, Any] | None:
    assert process.stdout is not None
    line = process.stdout.readline()
    try:
        answer = json.loads(line) if line else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def render_all(store: Storage, jobs: dict[str, str], *, workers: int | None = None,
               on_done: Callable[[str], None] | None = None) -> Rendered:
    """Render each GLB of ``jobs`` (GLB name -> thumbnail name) into the store.

    Raises :class:`ThumbnailsUnavailableError` when f3d is absent or cannot start here.
    """
    check_available()
    result = Rendered()
    count = max(1, min(workers or (os.cpu_count() or 1), len(jobs)))
    local = threading.local()
    started: list[_Worker] = []
    lock = threading.Lock()

    def render_one(glb: str, thumb: str) -> None:
        if not hasattr(local, "worker"):
            local.worker = _Worker()
            with lock:
                started.append(local.worker)
        with store.local_copy(glb) as source, _scratch(thumb) as png:
            try:
                local.worker.render(source, png)
                store.write(thumb, png)
            except ThumbnailsUnavailableError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad model must not stop the others
                with lock:
                    result.failed[glb] = str(exc)
            else:
                with lock:
                    result.done.append(glb)
        if on_done is not None:
            on_done(glb)

    try:
        with ThreadPoolExecutor(count, thread_name_prefix="thumbnails") as pool:
            futures = [pool.submit(render_one, glb, thumb) for glb, thumb in jobs.items()]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)  # f3d cannot run here, or Ctrl-C: stop now
                raise
    finally:
        for worker in started:
            worker.close()
    return result


@contextlib.contextmanager
def _scratch(name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="trellis-box-thumbnail-") as folder:
        yield Path(folder) / Path(name).name
