"""The websocket side: connected clients and the ordered stream of messages to them."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from standin import options
from standin.progress import Activity

log = logging.getLogger("standin.hub")


class Hub:
    """``publish`` may be called from any thread; one task sends in publishing order.

    ``status`` builds the queue state every client gets on connecting; ``features`` is the
    answer to a client's ``feature_flags`` message.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, activity: Activity,
                 status: Callable[[], dict[str, Any]],
                 features: Callable[[], dict[str, Any]]) -> None:
        self._loop = loop
        self._activity = activity
        self._status = status
        self._features = features
        self._outbox: asyncio.Queue[tuple[str, Any, str | None]] = asyncio.Queue()
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._requests: dict[str, web.Request] = {}
        self._sent: dict[str, int] = {}

    def publish(self, event: str, data: Any, sid: str | None = None) -> None:
        """Queue a message for client ``sid`` (every client when ``None``)."""
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, (event, data, sid))

    async def deliver_forever(self) -> None:
        while True:
            event, data, sid = await self._outbox.get()
            await self.send(event, data, sid)

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        targets = list(self._sockets) if sid is None else [sid]
        for target in targets:
            socket = self._sockets.get(target)
            if socket is None:
                continue
            try:
                await socket.send_json({"type": event, "data": data})
            except Exception as e:  # one client going away must not starve the others
                log.warning("websocket %s: %s", target, e)
                continue
            self._sent[target] = self._sent.get(target, 0) + 1
            limit = options.current.drop_ws_after
            if limit and self._sent[target] >= limit:
                self._cut(target)

    def _cut(self, sid: str) -> None:
        """Drop the connection without a close frame, as a crashed proxy or network would."""
        self._sockets.pop(sid, None)
        request = self._requests.pop(sid, None)
        if request is not None and request.transport is not None:
            request.transport.abort()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """``GET /ws?clientId=...``: a client reusing its id replaces its old connection."""
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sid = request.rel_url.query.get("clientId", "") or uuid.uuid4().hex
        self._sockets[sid] = socket
        self._requests[sid] = request
        self._sent[sid] = 0
        try:
            await self.send("status", {"status": self._status(), "sid": sid}, sid)
            if self._activity.client_id == sid and self._activity.node_id is not None:
                await self.send("executing", {"node": self._activity.node_id}, sid)
            await self._read(socket, sid)
        finally:
            if self._sockets.get(sid) is socket:
                del self._sockets[sid]
                self._requests.pop(sid, None)
        return socket

    async def _read(self, socket: web.WebSocketResponse, sid: str) -> None:
        first = True
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(message.data)
            except json.JSONDecodeError:
                log.warning("websocket %s sent invalid JSON: %.200s", sid, message.data)
                continue
            # Only a client's first message may negotiate features.
            if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                await self.send("feature_flags", self._features(), sid)
            first = False
