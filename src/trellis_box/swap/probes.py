"""What ``swap`` and ``status`` ask a running container: is it ready, what is in its queue.

Readiness is a plain HTTP GET of the configured URL (any container's health route: ours is
``/trellis-box/ready``); the queue is read and cut through :class:`trellis_box.comfyui.client.ComfyClient`.
"""

from __future__ import annotations

import asyncio
import errno
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from trellis_box.comfyui.client import ComfyClient, QueueState, Timeouts

T = TypeVar("T")

PROBE_TIMEOUT = 5.0
_CLIENT_TIMEOUTS = Timeouts(connect=5.0, request=15.0)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: str  # what the URL answered, for messages: "200", "503: {...}", "connection refused"


def probe_ready(url: str) -> Readiness:
    """``ready`` when ``url`` answers 2xx; otherwise what it answered, in one line."""
    try:
        # gpu_config accepts only http(s) URLs here.
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as resp:  # noqa: S310
            return Readiness(True, str(resp.status))
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
        return Readiness(False, f"{exc.code}: {body}" if body else str(exc.code))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Readiness(False, str(getattr(reason, "strerror", None) or reason))


def _with_client(url: str, call: Callable[[ComfyClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with ComfyClient(url, timeouts=_CLIENT_TIMEOUTS) as comfy:
            return await call(comfy)
    return asyncio.run(run())


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


def read_queue(comfy_url: str) -> QueueState:
    """The prompts running and pending; raises the client's errors when it cannot be read."""
    return _with_client(comfy_url, lambda comfy: comfy.queue())


def cut_queue(comfy_url: str, seen: QueueState) -> None:
    """Delete the pending prompts in ``seen`` and interrupt its running one: only prompts the
    caller has listed, so its report of what was cut off is exact."""
    async def cut(comfy: ComfyClient) -> None:
        if seen.pending:
            await comfy.delete_pending(list(seen.pending))
        for prompt_id in seen.running:
            await comfy.interrupt(prompt_id)
    _with_client(comfy_url, cut)
