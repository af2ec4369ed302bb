"""Small helpers for tests that talk to a stand-in directly (not through trellis_box.comfyui.client).

``recorded_graph`` returns the graph the recordings sent (scenario 07: the TRELLIS.2 pipeline
plus the GLB output node), so stand-in tests do not depend on our workflow builder.
"""

from __future__ import annotations

import copy
import io
import json
from functools import cache
from typing import Any

import aiohttp
from PIL import Image, ImageDraw

from tests.conftest import COMFY_RECORDINGS

TRACES = COMFY_RECORDINGS / "traces"
Graph = dict[str, dict[str, Any]]


@cache
def _recorded_request(scenario: str) -> dict[str, Any]:
    with (TRACES / f"{scenario}.jsonl").open(encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if event["kind"] == "http" and event["path"] == "/prompt":
                return dict(event["request_json"])
    raise AssertionError(f"no /prompt request in {scenario}")


def recorded_graph(*, seed: int = 1, image: str = "chair.png", glb_output: bool = True) -> Graph:
    graph: Graph = copy.deepcopy(_recorded_request("07_success_with_glb_ui_output")["prompt"])
    graph["1"]["inputs"]["image"] = image
    graph["6"]["inputs"]["seed"] = seed
    if glb_output:
        graph["10"]["class_type"] = "TrellisBoxGLBOutput"
    else:
        del graph["10"]
    return graph


def object_png(size: tuple[int, int] = (256, 256), colour: tuple[int, int, int] = (180, 40, 40),
               mode: str = "RGB") -> bytes:
    """An object on a plain light background: what the stand-in's RMBG can cut out."""
    image = Image.new("RGB", size, (250, 250, 250))
    w, h = size
    ImageDraw.Draw(image).ellipse((w // 4, h // 5, 3 * w // 4, 4 * h // 5), fill=colour)
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


async def upload(session: aiohttp.ClientSession, name: str, data: bytes,
                 **fields: str) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    return await session.post("/upload/image", data=form)


async def submit(session: aiohttp.ClientSession, graph: Graph, client_id: str) -> dict[str, Any]:
    response = await session.post("/prompt", json={"prompt": graph, "client_id": client_id})
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


async def messages_until_done(ws: aiohttp.ClientWebSocketResponse, prompt_id: str,
                              timeout: float = 60) -> list[dict[str, Any]]:
    """Messages up to and including ``executing`` with ``node: null`` for ``prompt_id``."""
    messages = []
    while True:
        message = await ws.receive(timeout=timeout)
        assert message.type == aiohttp.WSMsgType.TEXT, f"websocket ended early: {message}"
        data = json.loads(message.data)
        messages.append(data)
        if data["type"] == "executing" and data["data"] == {"node": None, "prompt_id": prompt_id}:
            return messages


async def run(session: aiohttp.ClientSession, graph: Graph,
              client_id: str = "probe") -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """Submit over a fresh websocket; return prompt id, its messages and its history record."""
    ws = await session.ws_connect(f"/ws?clientId={client_id}")
    try:
        prompt_id = (await submit(session, graph, client_id))["prompt_id"]
        messages = await messages_until_done(ws, prompt_id)
    finally:
        await ws.close()
    history = await (await session.get(f"/history/{prompt_id}")).json()
    return prompt_id, messages, history[prompt_id]


def of_type(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m["data"] for m in messages if m["type"] == kind]
