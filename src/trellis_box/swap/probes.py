"""What ``swap`` and ``status`` ask running containers: is it ready, what is in its queue.

One :class:`Probes` serves a whole swap or status: one event loop, one HTTP stack (``aiohttp``),
and one session opened once and kept, shared by readiness and every ComfyUI client, so a 30-minute
drain polling every second reuses the same connection instead of opening 1,800. Readiness is a
plain GET of the configured URL (any container's health route: ours is ``/trellis-box/ready``);
the queue is read and cut through
:class:`trellis_box.comfyui.client.ComfyHttp`, on every ComfyUI worker the container's
``/trellis-box/info`` lists (``comfyui/workers.py``; a plain ComfyUI is its one URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp

from trellis_box.comfyui.client import ComfyHttp, QueueState, Timeouts
from trellis_box.comfyui.workers import worker_urls

T = TypeVar("T")

PROBE_TIMEOUT = 5.0
POLL_SECONDS = 1.0
_CLIENT_TIMEOUTS = Timeouts(connect=5.0, request=15.0)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: str  # what the URL answered, for messages: "200", "503: {...}", "connection refused"


@dataclass(frozen=True)
class Device:
    name: str
    type: str
    vram_total: int
    vram_free: int


@dataclass(frozen=True)
class ServerStats:
    """A ComfyUI server's ``/system_stats`` and ``/queue``, as ``status`` shows a server given by URL."""

    comfyui_version: str | None
    ram_total: int | None
    ram_free: int | None
    devices: list[Device]
    queue_running: int
    queue_pending: int


def nothing_listening(exc: BaseException) -> bool:
    """True when ``exc`` comes from a refused connection: no server is bound to the port, so no
    queue exists there (a container that is starting, or whose ComfyUI died)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED:
            return True
        nested = getattr(seen, "os_error", None)  # aiohttp keeps the socket's error here
        if isinstance(nested, OSError) and nested.errno == errno.ECONNREFUSED:
            return True
        seen = seen.__cause__
    return False


class Probes:
    """``with Probes() as probes: probes.ready(url); probes.drain(url, timeout=60)``.

    Synchronous to its caller (swap's steps are Docker calls, one after another); every request
    runs on the one loop it keeps. Not for use from inside a running event loop.
    """

    def __init__(self, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self._runner = asyncio.Runner()
        self._open = contextlib.AsyncExitStack()
        self._session: aiohttp.ClientSession | None = None
        self._comfy: dict[str, ComfyHttp] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._runner.run(self._open.aclose())
        finally:
            self._runner.close()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        try:
            return self._runner.run(work)
        except KeyboardInterrupt:
            # A SIGTERM turned into KeyboardInterrupt can land outside the task (in the loop's
            # select): cancel what it left so the rollback's requests start from a clean loop.
            for task in asyncio.all_tasks(self._runner.get_loop()):
                task.cancel()
            raise

    async def _shared(self) -> aiohttp.ClientSession:
        """The one session (and connection pool) of every probe, readiness and queue alike."""
        if self._session is None:
            t = _CLIENT_TIMEOUTS
            self._session = await self._open.enter_async_context(aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=t.request, connect=t.connect)))
        return self._session

    async def _client(self, comfy_url: str) -> ComfyHttp:
        comfy = self._comfy.get(comfy_url)
        if comfy is None:
            comfy = await self._open.enter_async_context(
                ComfyHttp(comfy_url, timeouts=_CLIENT_TIMEOUTS, session=await self._shared()))
            self._comfy[comfy_url] = comfy
        return comfy

    async def _workers(self, comfy_url: str) -> list[ComfyHttp]:
        """A client for every worker behind ``comfy_url``, the first being ``comfy_url``'s."""
        first = await self._client(comfy_url)
        urls = worker_urls(comfy_url, await first.trellis_info())
        return [first, *[await self._client(url) for url in urls[1:]]]

    @staticmethod
    async def _queues(workers: list[ComfyHttp]) -> QueueState:
        """Every worker's queue as one: what a drain waits for and a cut may withdraw."""
        states = await asyncio.gather(*(w.queue() for w in workers))
        return QueueState(tuple(p for q in states for p in q.running),
                          tuple(p for q in states for p in q.pending))

    # ---- readiness -------------------------------------------------------------------------

    def ready(self, url: str) -> Readiness:
        """``ready`` when ``url`` answers 2xx; otherwise what it answered, in one line."""
        return self._run(self._ready(url))

    async def _ready(self, url: str) -> Readiness:
        session = await self._shared()
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as resp:
                if 200 <= resp.status < 300:
                    return Readiness(True, str(resp.status))
                body = (await resp.content.read(300)).decode("utf-8", "replace")
                body = body.strip().replace("\n", " ")
                return Readiness(False, f"{resp.status}: {body}" if body else str(resp.status))
        except TimeoutError:
            return Readiness(False, f"no answer within {PROBE_TIMEOUT:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            if nothing_listening(exc):
                return Readiness(False, "connection refused")
            return Readiness(False, f"{type(exc).__name__}: {exc}".rstrip(": "))

    # ---- queues ----------------------------------------------------------------------------

    def queue(self, comfy_url: str) -> QueueState:
        """The prompts running and pending on every worker; raises the client's errors when one
        cannot be read."""
        async def read() -> QueueState:
            return await self._queues(await self._workers(comfy_url))
        return self._run(read())

    def drain(self, comfy_url: str, *, timeout: float,
              on_change: Callable[[QueueState], None] = lambda _: None) -> QueueState:
        """Poll the queue until it is empty or ``timeout`` seconds passed; the last queue read
        (empty when drained). ``on_change`` hears each new non-empty state. Raises the client's
        errors when the queue cannot be read."""
        async def poll() -> QueueState:
            workers = await self._workers(comfy_url)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            last: QueueState | None = None
            while True:
                queue = await self._queues(workers)
                if not queue.running and not queue.pending:
                    return queue
                if queue != last:
                    on_change(queue)
                    last = queue
                if loop.time() >= deadline:
                    return queue
                await asyncio.sleep(self.poll_seconds)
        return self._run(poll())

    def cut(self, comfy_url: str, seen: QueueState) -> None:
        """Delete the pending prompts in ``seen`` and interrupt its running one: only prompts the
        caller has listed, so its report of what was cut off is exact."""
        async def cut(comfy: ComfyHttp) -> None:
            here = await comfy.queue()
            pending = [p for p in here.pending if p in seen.pending]
            if pending:
                await comfy.delete_pending(pending)
            for prompt_id in here.running:
                if prompt_id in seen.running:
                    await comfy.interrupt(prompt_id)

        async def cut_all() -> None:
            await asyncio.gather(*(cut(w) for w in await self._workers(comfy_url)))
        self._run(cut_all())

    # ---- a plain ComfyUI -------------------------------------------------------------------

    def server_stats(self, comfy_url: str) -> ServerStats:
        """``/system_stats`` and ``/queue`` of any ComfyUI; raises the client's errors."""
        async def read() -> ServerStats:
            workers = await self._workers(comfy_url)
            stats, queue = await asyncio.gather(workers[0].system_stats(), self._queues(workers))
            system = stats.get("system") or {}
            devices = [Device(str(d.get("name", "?")), str(d.get("type", "?")),
                              int(d.get("vram_total") or 0), int(d.get("vram_free") or 0))
                       for d in stats.get("devices") or [] if isinstance(d, dict)]
            return ServerStats(system.get("comfyui_version"), system.get("ram_total"),
                               system.get("ram_free"), devices, len(queue.running),
                               len(queue.pending))
        return self._run(read())
