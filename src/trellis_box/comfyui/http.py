"""ComfyUI's HTTP API: one ``aiohttp`` session, answers as typed values, failures as our errors.

The plain requests (stats, history, queue, uploads, ``/view`` downloads), usable alone where no
prompt is followed. :class:`trellis_box.comfyui.client.ComfyClient` has one as its ``http`` part
and adds prompts and the websocket. Import these names from :mod:`trellis_box.comfyui.client`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp

from trellis_box.comfyui.explain import write_failed
from trellis_box.errors import (
    ComfyResponseError,
    ComfyUnreachableError,
    OutputGoneError,
    TrellisBoxError,
    UsageError,
)


@dataclass(frozen=True)
class Timeouts:
    """Every wait of the client, in seconds; ``job=None`` lets a prompt run forever."""

    connect: float = 10.0
    request: float = 60.0
    #: Longest silence while streaming a file from ``/view``.
    download_read: float = 120.0
    heartbeat: float = 20.0
    #: How long the server may stay unreachable before its prompts are given up.
    reconnect: float = 300.0
    #: A prompt silent this long is checked through ``/history`` and ``/queue``.
    poll: float = 15.0
    #: How long an interrupted prompt gets to report that it stopped.
    interrupt_grace: float = 30.0
    job: float | None = 3600.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and value <= 0:
                raise UsageError(f"Timeouts.{name} must be > 0 (got {value})",
                                 fix=f"give {name} a positive number of seconds"
                                     + (", or None for no limit" if name == "job" else ""),
                                 field=f"Timeouts.{name}")


@dataclass(frozen=True)
class OutputRef:
    """One file a node reported in its UI output; ``/view`` serves it."""

    filename: str
    subfolder: str = ""
    type: str = "output"

    @property
    def path(self) -> str:
        """Where it lies under the server's folder of its ``type``, as people name it."""
        return f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename

    @property
    def params(self) -> dict[str, str]:
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}


@dataclass(frozen=True)
class QueueState:
    running: tuple[str, ...]
    pending: tuple[str, ...]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


class ComfyHttp:
    """``async with ComfyHttp("http://127.0.0.1:8188") as comfy: await comfy.queue()``."""

    def __init__(self, base_url: str, *, timeouts: Timeouts = Timeouts(),
                 session: aiohttp.ClientSession | None = None) -> None:
        """``session``: one the caller owns and keeps open (its timeouts apply), shared by the
        clients of several servers; by default each client opens and closes its own."""
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"server URL {base_url!r} does not start with http:// or https://",
                             fix="give the ComfyUI base URL, e.g. http://127.0.0.1:8188")
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        if self._owns_session:
            t = self.timeouts
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=t.request, connect=t.connect))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session, for the websocket of the same connection pool."""
        assert self._session is not None, "use ComfyHttp (or ComfyClient) as an async context manager"
        return self._session

    @contextlib.asynccontextmanager
    async def request(self, method: str, path: str, **kwargs: Any
                      ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request; no answer at all becomes :class:`ComfyUnreachableError`."""
        url = f"{self.base_url}{path}"
        try:
            async with self.session.request(method, url, **kwargs) as resp:
                yield resp
        except TrellisBoxError:
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ComfyUnreachableError(
                f"ComfyUI at {self.base_url} did not answer {method} {path}",
                detail=f"{type(exc).__name__}: {exc}".rstrip(": "),
                fix=f"check that the server runs and is reachable: curl {self.base_url}/system_stats",
                url=url,
            ) from exc

    async def _json(self, method: str, path: str, *, absent_on_404: bool = False,
                    **kwargs: Any) -> Any:
        async with self.request(method, path, **kwargs) as resp:
            if absent_on_404 and resp.status == 404:
                return None
            if resp.status != 200:
                raise await self.unexpected(resp, method, path)
            try:
                return await resp.json(content_type=None)
            except ValueError as exc:
                raise ComfyResponseError(
                    f"ComfyUI answered {method} {path} with a body that is not JSON",
                    detail=f"status {resp.status}, content type {resp.content_type}",
                    fix=f"check that {self.base_url} is a ComfyUI server (GET /system_stats)",
                ) from exc

    async def unexpected(self, resp: aiohttp.ClientResponse, method: str, path: str
                         ) -> ComfyResponseError:
        """The error for an answer this client cannot use, quoting the start of its body."""
        body = (await resp.text())[:300]
        return ComfyResponseError(
            f"ComfyUI answered {method} {path} with status {resp.status}",
            detail=body or None,
            fix=f"check the server log of {self.base_url}; this client expects ComfyUI 0.3.64",
            status=resp.status, path=path,
        )

    async def system_stats(self) -> dict[str, Any]:
        return await self._json("GET", "/system_stats")  # type: ignore[no-any-return]

    async def object_info(self) -> dict[str, Any]:
        return await self._json("GET", "/object_info")  # type: ignore[no-any-return]

    async def trellis_info(self) -> dict[str, Any] | None:
        """``/trellis-box/info`` from our node pack, or ``None`` on a plain ComfyUI."""
        info = await self._json("GET", "/trellis-box/info", absent_on_404=True)
        return info  # type: ignore[no-any-return]

    async def trellis_gpu(self) -> dict[str, Any] | None:
        """``/trellis-box/gpu``: torch's memory counters of the server's device (``available``
        false, with a ``reason``, where it has no torch or CUDA), or ``None`` on a plain ComfyUI."""
        return await self._json("GET", "/trellis-box/gpu", absent_on_404=True)  # type: ignore[no-any-return]

    async def reset_gpu_peak(self) -> bool:
        """Reset torch's peak memory counters on the server; False where it cannot."""
        answer = await self._json("POST", "/trellis-box/gpu/reset-peak", absent_on_404=True)
        return bool((answer or {}).get("reset"))

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry of one prompt, or ``None`` while it has none."""
        data = await self._json("GET", f"/history/{prompt_id}")
        return data.get(prompt_id) if isinstance(data, dict) else None

    async def queue(self) -> QueueState:
        data = await self._json("GET", "/queue")
        return QueueState(tuple(str(item[1]) for item in data.get("queue_running", [])),
                          tuple(str(item[1]) for item in data.get("queue_pending", [])))

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt; with ``prompt_id``, only if that one is running."""
        body = {"prompt_id": prompt_id} if prompt_id else {}
        async with self.request("POST", "/interrupt", json=body) as resp:
            if resp.status != 200:
                raise await self.unexpected(resp, "POST", "/interrupt")

    async def delete_pending(self, prompt_ids: list[str]) -> None:
        """Remove these prompts from the pending queue (others' prompts stay)."""
        await self._post_queue({"delete": prompt_ids})

    async def clear_queue(self) -> None:
        """Remove every pending prompt, whoever queued it."""
        await self._post_queue({"clear": True})

    async def _post_queue(self, body: dict[str, Any]) -> None:
        async with self.request("POST", "/queue", json=body) as resp:
            if resp.status != 200:
                raise await self.unexpected(resp, "POST", "/queue")

    async def upload_image(self, path: Path) -> str:
        """Upload ``path`` under a name made of its content hash; an existing copy is reused."""
        return await self.upload_bytes(path.read_bytes(), path.suffix)

    async def upload_bytes(self, data: bytes, suffix: str) -> str:
        """Upload image bytes as ``trellis-box-<sha256>.<suffix>``; returns the name to load.

        The name is the content, so a re-run finds the file already there (checked with
        ``HEAD /view``) and ComfyUI's cache sees the same ``LoadImage`` input.
        """
        name = f"trellis-box-{hashlib.sha256(data).hexdigest()[:32]}{suffix.lower()}"
        async with self.request("HEAD", "/view", params={"filename": name, "type": "input"}) as resp:
            if resp.status == 200:
                return name
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="application/octet-stream")
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        answer = await self._json("POST", "/upload/image", data=form)
        sub = answer.get("subfolder") or ""
        return f"{sub}/{answer['name']}" if sub else str(answer["name"])

    async def download(self, ref: OutputRef, dest: Path) -> Path:
        """Stream ``ref`` from ``/view`` into a temporary file beside ``dest``, then rename it."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeouts.connect,
                                        sock_read=self.timeouts.download_read)
        try:
            async with self.request("GET", "/view", params=ref.params, timeout=timeout) as resp:
                if resp.status == 404:
                    raise self._gone(ref)
                if resp.status != 200:
                    raise await self.unexpected(resp, "GET", f"/view?filename={ref.filename}")
                with tmp.open("wb") as fh:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        fh.write(chunk)
            os.replace(tmp, dest)
        except OSError as exc:
            if isinstance(exc, TrellisBoxError):
                raise
            raise write_failed(dest, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def _gone(self, ref: OutputRef) -> OutputGoneError:
        return OutputGoneError(
            f"ComfyUI at {self.base_url} no longer has {ref.path}, the {ref.type} file "
            "/history names",
            detail="GET /view answered 404: the file was deleted from the server's "
                   f"{ref.type}/ folder after the prompt that wrote it ran (ComfyUI answers a "
                   "prompt it has run before from its cache, naming the old file again).",
            fix=f"leave the server's {ref.type}/ folder alone while jobs run, then run the same "
                "command again: trellis-box exports an output deleted before its job once more",
            file=ref.path, url=f"{self.base_url}/view",
        )
