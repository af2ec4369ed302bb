"""The ComfyUI client: queue prompts and follow each to its end over one websocket.

:class:`ComfyClient` has a :class:`ComfyHttp` as its ``http`` part (the plain requests: stats,
history, queue, uploads, ``/view``) and adds prompts: together they are the only code that speaks
to ComfyUI, and this module is where every public name of the client is imported from.

Completion is never taken from one signal alone: the websocket says when a prompt ends
(``executing`` with ``node: null``), ``/history/<id>`` is the truth about its outputs, and while
the websocket is down (or silent for ``Timeouts.poll``) the client reconciles each of its prompts
through ``/history`` and ``/queue``, so a prompt that ended while it was disconnected is not lost,
and one the server forgot (restart) is reported as lost. An outage has one deadline,
``Timeouts.reconnect`` after the connection dropped: every prompt followed and every caller
waiting for the connection gives up then, together.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp

from trellis_box.comfyui import protocol
from trellis_box.comfyui.explain import execution_failure, given_up, interrupted, lost, rejected
from trellis_box.comfyui.http import ComfyHttp, OutputRef, QueueState, Timeouts
from trellis_box.errors import (
    ComfyResponseError,
    ComfyUnreachableError,
    JobTimeoutError,
    PromptWithdrawnError,
    TrellisBoxError,
)

__all__ = ["ComfyClient", "ComfyHttp", "Connection", "JobResult", "OutputRef", "QueueState",
           "Timeouts"]

MessageCallback = Callable[[protocol.PromptMessage], None]


@dataclass(frozen=True)
class Connection:
    """The websocket's state, told to ``on_connection`` whenever it changes."""

    url: str
    up: bool
    #: While down: seconds the client keeps retrying before it gives its prompts up.
    retry_seconds: float = 0.0
    #: While down: when it went down (seconds since the epoch).
    down_since: float | None = None


ConnectionCallback = Callable[[Connection], None]


@dataclass
class JobResult:
    prompt_id: str
    #: node id -> that node's UI output, from ``/history``.
    outputs: dict[str, dict[str, Any]]
    #: node id -> seconds it ran, measured from the websocket (empty if it was down throughout).
    node_seconds: dict[str, float] = field(default_factory=dict)
    cached_nodes: tuple[str, ...] = ()
    #: server-side ``execution_start`` / ``execution_success`` times (ms since the epoch).
    started_ms: int | None = None
    finished_ms: int | None = None

    def files(self, node: str, kind: str) -> list[OutputRef]:
        entries = (self.outputs.get(node) or {}).get(kind) or []
        return [OutputRef(e["filename"], e.get("subfolder", ""), e.get("type", "output"))
                for e in entries]


class _Tracker:
    """What the websocket told us about one prompt."""

    def __init__(self, prompt_id: str, graph: dict[str, Any], on_message: MessageCallback | None):
        self.prompt_id, self.graph, self.on_message = prompt_id, graph, on_message
        self.done = asyncio.Event()
        #: Set whenever something a waiter decides on changed: started, ended.
        self.changed = asyncio.Event()
        #: Why the prompt ended without a result the server can tell: forgotten, or given up.
        self.lost: TrellisBoxError | None = None
        self.started_at: float | None = None
        self.last_seen = asyncio.get_running_loop().time()
        self.node_seconds: dict[str, float] = {}
        self.cached: tuple[str, ...] = ()
        self._node: tuple[str, float] | None = None

    def feed(self, msg: protocol.PromptMessage) -> None:
        now = asyncio.get_running_loop().time()
        self.last_seen = now
        if isinstance(msg, protocol.ExecutionStart):
            self.mark_started()
        elif isinstance(msg, protocol.ExecutionCached):
            self.cached = msg.nodes
        elif isinstance(msg, (protocol.Executing, protocol.ExecutionError,
                              protocol.ExecutionInterrupted)):
            if self._node is not None:
                node, since = self._node
                self.node_seconds[node] = self.node_seconds.get(node, 0.0) + now - since
            running = msg.node if isinstance(msg, protocol.Executing) else None
            self._node = (running, now) if running is not None else None
            if isinstance(msg, protocol.Executing) and running is None:
                self.finish()
        if self.on_message is not None:
            self.on_message(msg)

    def mark_started(self) -> None:
        if self.started_at is None:
            self.started_at = asyncio.get_running_loop().time()
            self.changed.set()

    def finish(self, lost: TrellisBoxError | None = None) -> None:
        if not self.done.is_set():
            self.lost = lost
            self.done.set()
            self.changed.set()


def _finished(entry: dict[str, Any] | None) -> bool:
    status = (entry or {}).get("status") or {}
    return bool(status.get("completed")) or status.get("status_str") in ("success", "error")


class ComfyClient:
    """``async with ComfyClient("http://127.0.0.1:8188") as comfy: await comfy.run(graph)``;
    the plain requests through its ``http`` part: ``await comfy.http.queue()``."""

    def __init__(self, base_url: str, *, timeouts: Timeouts = Timeouts(),
                 client_id: str | None = None,
                 on_connection: ConnectionCallback | None = None) -> None:
        self.http = ComfyHttp(base_url, timeouts=timeouts)
        self.base_url, self.timeouts = self.http.base_url, timeouts
        self.client_id = client_id or uuid.uuid4().hex
        self._on_connection = on_connection
        self._trackers: dict[str, _Tracker] = {}
        # Messages can arrive before POST /prompt has returned the id: kept while a submit runs.
        self._early: dict[str, list[protocol.PromptMessage]] = defaultdict(list)
        self._submitting = 0
        self._follower: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._ws_generation = 0
        #: The current outage: when it began (loop time, wall time) and the timer that ends it.
        self._down: tuple[float, float] | None = None
        self._give_up_timer: asyncio.TimerHandle | None = None

    @property
    def reconnects(self) -> int:
        """How often the websocket had to be opened again after a drop."""
        return max(self._ws_generation - 1, 0)

    async def __aenter__(self) -> Self:
        await self.http.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._give_up_timer is not None:
            self._give_up_timer.cancel()
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self.http.__aexit__(*exc)

    # ---- prompts ---------------------------------------------------------------------------

    async def queue_prompt(self, graph: dict[str, Any], *,
                           on_message: MessageCallback | None = None) -> str:
        """Queue ``graph`` under this client's id and start following it; returns the prompt id.

        Raises :class:`PromptNodeError` for any ``node_errors`` (even on a 200: ComfyUI then runs
        every output node that does not depend on the bad input, so the prompt is removed from
        the queue again, and interrupted if it already started).
        """
        await self._ensure_following()
        self._submitting += 1
        http = self.http
        try:
            async with http.request("POST", "/prompt",
                                    json={"prompt": graph, "client_id": self.client_id}) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    raise await http.unexpected(resp, "POST", "/prompt")
                if resp.status == 400:
                    raise rejected(body.get("error") or {}, body.get("node_errors") or {}, graph)
                if resp.status != 200 or "prompt_id" not in body:
                    raise await http.unexpected(resp, "POST", "/prompt")
            prompt_id = str(body["prompt_id"])
            if body.get("node_errors"):
                # With an empty queue the partial prompt starts at once; in our graph it can
                # include the generator itself (an output node), minutes of GPU for nothing.
                with contextlib.suppress(ComfyUnreachableError, ComfyResponseError):
                    await http.delete_pending([prompt_id])
                    if prompt_id in (await http.queue()).running:
                        await http.interrupt(prompt_id)
                raise rejected({}, body["node_errors"], graph, prompt_id=prompt_id)
            tracker = _Tracker(prompt_id, graph, on_message)
            self._trackers[prompt_id] = tracker
            for msg in self._early.pop(prompt_id, []):
                tracker.feed(msg)
            return prompt_id
        finally:
            self._submitting -= 1
            if not self._submitting:
                self._early.clear()

    async def wait(self, prompt_id: str, *, timeout: float | None = None) -> JobResult:
        """Follow a queued prompt to its end and return its outputs from ``/history``.

        ``timeout`` (default ``Timeouts.job``) counts from the moment the prompt starts running;
        when it passes, the prompt is interrupted and :class:`JobTimeoutError` raised with the
        seconds it really ran.
        """
        tracker = self._trackers[prompt_id]
        limit = self.timeouts.job if timeout is None else timeout
        loop = asyncio.get_running_loop()
        try:
            while not tracker.done.is_set():
                wait_for = self.timeouts.poll
                if limit is not None and tracker.started_at is not None:
                    left = tracker.started_at + limit - loop.time()
                    if left <= 0:
                        await self._stop(tracker)
                        ran = loop.time() - tracker.started_at
                        raise JobTimeoutError(
                            f"prompt {prompt_id} ran {ran:.1f} s, over its limit of {limit:g} s, "
                            "and was interrupted",
                            fix="raise the limit (`job_timeout`), or lower `resolution` or the step counts",
                            prompt_id=prompt_id, timeout=limit, seconds=round(ran, 1))
                    wait_for = min(wait_for, left)
                # Woken by the start too, so the limit counts from it and not from the last poll.
                tracker.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(tracker.changed.wait(), wait_for)
                if not tracker.done.is_set() and loop.time() - tracker.last_seen >= self.timeouts.poll:
                    with contextlib.suppress(ComfyUnreachableError):
                        await self._reconcile(tracker)
            if tracker.lost is not None:
                raise tracker.lost
            return await self._result(tracker)
        finally:
            self._trackers.pop(prompt_id, None)

    async def withdraw(self, prompt_id: str) -> bool:
        """Take a prompt back while it waits in the queue. True: it is out of the queue and will
        not run here, and its :meth:`wait` raises :class:`PromptWithdrawnError`. False: it had
        started (or ended) first, and runs to its end as if nothing was asked."""
        tracker = self._trackers.get(prompt_id)
        if tracker is None or tracker.started_at is not None or tracker.done.is_set():
            return False
        await self.http.delete_pending([prompt_id])
        # ComfyUI moves a prompt from pending to running under one lock: read after the delete,
        # a prompt in neither list was deleted, unless it had already ended.
        state = await self.http.queue()
        if prompt_id in state or _finished(await self.http.history(prompt_id)):
            return False
        tracker.finish(PromptWithdrawnError(
            f"prompt {prompt_id} was taken back from {self.base_url} before it started",
            fix="queue it again where it should run", prompt_id=prompt_id))
        return True

    async def run(self, graph: dict[str, Any], *, timeout: float | None = None,
                  on_message: MessageCallback | None = None) -> JobResult:
        return await self.wait(await self.queue_prompt(graph, on_message=on_message),
                               timeout=timeout)

    async def _result(self, tracker: _Tracker) -> JobResult:
        entry = await self.http.history(tracker.prompt_id)
        if entry is None:
            raise lost(tracker.prompt_id, self.base_url)
        started = finished = None
        for kind, data in (entry.get("status") or {}).get("messages") or []:
            msg = protocol.parse({"type": kind, "data": data})
            if isinstance(msg, protocol.ExecutionStart):
                started = msg.timestamp_ms
            elif isinstance(msg, protocol.ExecutionSuccess):
                finished = msg.timestamp_ms
            elif isinstance(msg, protocol.ExecutionError):
                raise execution_failure(msg, tracker.graph)
            elif isinstance(msg, protocol.ExecutionInterrupted):
                raise interrupted(msg)
        return JobResult(tracker.prompt_id, entry.get("outputs") or {}, tracker.node_seconds,
                         tracker.cached, started, finished)

    async def _reconcile(self, tracker: _Tracker) -> None:
        """Ask the server where a prompt is, when the websocket cannot tell us."""
        tracker.last_seen = asyncio.get_running_loop().time()
        if _finished(await self.http.history(tracker.prompt_id)):
            tracker.finish()
            return
        state = await self.http.queue()
        if tracker.prompt_id in state.running:
            tracker.mark_started()
        elif tracker.prompt_id not in state.pending:
            # It may have ended between the two reads.
            if _finished(await self.http.history(tracker.prompt_id)):
                tracker.finish()
            else:
                tracker.finish(lost(tracker.prompt_id, self.base_url))

    async def _stop(self, tracker: _Tracker) -> None:
        with contextlib.suppress(ComfyUnreachableError, ComfyResponseError):
            state = await self.http.queue()
            if tracker.prompt_id in state.running:
                await self.http.interrupt(tracker.prompt_id)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(tracker.done.wait(), self.timeouts.interrupt_grace)
            elif tracker.prompt_id in state.pending:
                await self.http.delete_pending([tracker.prompt_id])

    # ---- websocket -------------------------------------------------------------------------

    async def wait_connected(self) -> None:
        """Wait until the websocket is up (again); :class:`ComfyUnreachableError` once the
        outage's deadline (``Timeouts.reconnect`` after it began) has passed."""
        await self._ensure_following()

    async def _ensure_following(self) -> None:
        if self._follower is None or self._follower.done():
            self._follower = asyncio.create_task(self._follow(), name="comfyui-websocket")
        if self._connected.is_set():
            return
        loop = asyncio.get_running_loop()
        # Before the first attempt has failed there is no outage yet: a full window.
        left = (self._down[0] + self.timeouts.reconnect - loop.time() if self._down
                else self.timeouts.reconnect)
        try:
            await asyncio.wait_for(self._connected.wait(), max(left, 0.0))
        except TimeoutError:
            raise self._unreachable() from None

    def _unreachable(self, prompt_id: str | None = None) -> ComfyUnreachableError:
        since = self._down[1] if self._down else time.time()
        return given_up(self.base_url, self.timeouts.reconnect, since, prompt_id=prompt_id)

    async def _follow(self) -> None:
        """Read the websocket forever: reconnect after a drop and reconcile what was missed."""
        ws_url = self.base_url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        backoff = 0.1
        while True:
            try:
                # Preview frames can be large; a frame over the limit would cost a reconnect.
                async with self.http.session.ws_connect(
                        ws_url, heartbeat=self.timeouts.heartbeat, max_msg_size=64 << 20,
                        timeout=aiohttp.ClientWSTimeout(ws_close=self.timeouts.connect)) as ws:
                    self._ws_generation += 1
                    self._connected.set()
                    self._back_up()
                    backoff = 0.1
                    if self._ws_generation > 1:
                        await self._reconcile_all()
                    async for frame in ws:
                        if frame.type == aiohttp.WSMsgType.TEXT:
                            self._dispatch(protocol.parse(frame.data))
            except (TimeoutError, aiohttp.ClientError, OSError, TrellisBoxError):
                pass  # reconnect below; prompts are reconciled once the socket is back
            self._connected.clear()
            self._went_down()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _went_down(self) -> None:
        if self._down is not None:
            return
        loop = asyncio.get_running_loop()
        self._down = (loop.time(), time.time())
        self._give_up_timer = loop.call_later(self.timeouts.reconnect, self._give_up)
        self._tell(Connection(self.base_url, up=False, retry_seconds=self.timeouts.reconnect,
                              down_since=self._down[1]))

    def _back_up(self) -> None:
        if self._give_up_timer is not None:
            self._give_up_timer.cancel()
            self._give_up_timer = None
        if self._down is not None:
            self._down = None
            self._tell(Connection(self.base_url, up=True))

    def _tell(self, state: Connection) -> None:
        if self._on_connection is not None:
            self._on_connection(state)

    def _dispatch(self, msg: protocol.Message) -> None:
        prompt_id = protocol.prompt_of(msg)
        if prompt_id is None:
            return
        tracker = self._trackers.get(prompt_id)
        if tracker is not None:
            tracker.feed(msg)  # type: ignore[arg-type]
        elif self._submitting:
            self._early[prompt_id].append(msg)  # type: ignore[arg-type]

    async def _reconcile_all(self) -> None:
        for tracker in list(self._trackers.values()):
            if not tracker.done.is_set():
                await self._reconcile(tracker)

    def _give_up(self) -> None:
        """The outage's deadline: every prompt followed fails with the same error."""
        self._give_up_timer = None
        for tracker in self._trackers.values():
            tracker.finish(self._unreachable(tracker.prompt_id))
