"""``server.PromptServer``: what custom nodes reach through ``PromptServer.instance``.

Packs add routes to ``routes`` while they are imported (mounted after all packs loaded), send
messages with ``send_sync`` from any thread, and read which client and node are active.
The server itself is ``standin.app.Standin``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

if TYPE_CHECKING:
    from standin.app import Standin


class PromptServer:
    instance: ClassVar[PromptServer]

    def __init__(self, standin: Standin) -> None:
        self._standin = standin
        self.routes: web.RouteTableDef = standin.routes
        self.app: web.Application = standin.web
        self.loop: asyncio.AbstractEventLoop = standin.loop
        PromptServer.instance = self

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        self._standin.hub.publish(event, data, sid)

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        await self._standin.hub.send(event, data, sid)

    @property
    def client_id(self) -> str | None:
        return self._standin.activity.client_id

    @property
    def last_node_id(self) -> str | None:
        return self._standin.activity.node_id

    @property
    def last_prompt_id(self) -> str | None:
        return self._standin.activity.prompt_id
