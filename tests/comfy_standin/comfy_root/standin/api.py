"""The JSON routes of ComfyUI 0.3.64's HTTP API that clients of the stand-in use.

Bodies and statuses are the recorded server's; ``/standin/options`` is the stand-in's own
(faults and timing of a running server, for tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import uuid
from typing import Any

import comfy.model_management as mm
import comfyui_version
from aiohttp import web

from standin import node_info, options, registry, validation
from standin.jobs import Job, JobQueue

log = logging.getLogger("standin.api")

# /system_stats fields of the recording machine that the stand-in has no way to know.
RECORDED_SYSTEM = {
    "required_frontend_version": "1.27.10",
    "installed_templates_version": "0.1.95",
    "required_templates_version": "0.1.95",
    "pytorch_version": "2.14.1+cu130",
}
GIB = 1024**3


def _empty(status: int = 200) -> web.Response:
    return web.Response(status=status)


def _refused(error: dict[str, Any], node_errors: dict[str, Any]) -> web.Response:
    return web.json_response({"error": error, "node_errors": node_errors}, status=400)


def system_stats() -> dict[str, Any]:
    chosen = options.current
    ram = options.RECORDED_RAM_BYTES
    if chosen.gpu_name:
        vram = chosen.vram_bytes or 24 * GIB
        device = {"name": f"cuda:0 {chosen.gpu_name} : cudaMallocAsync", "type": "cuda",
                  "index": 0, "vram_total": vram, "vram_free": vram - GIB // 2,
                  "torch_vram_total": 0, "torch_vram_free": 0}
    else:
        vram = chosen.vram_bytes or ram
        device = {"name": "cpu", "type": "cpu", "index": None, "vram_total": vram,
                  "vram_free": vram, "torch_vram_total": vram, "torch_vram_free": vram}
    return {
        "system": {
            "os": os.name, "ram_total": ram, "ram_free": ram,
            "comfyui_version": comfyui_version.__version__,
            "required_frontend_version": RECORDED_SYSTEM["required_frontend_version"],
            "installed_templates_version": RECORDED_SYSTEM["installed_templates_version"],
            "required_templates_version": RECORDED_SYSTEM["required_templates_version"],
            "python_version": sys.version,
            "pytorch_version": RECORDED_SYSTEM["pytorch_version"],
            "embedded_python": False,
            "argv": sys.argv,
        },
        "devices": [device],
    }


class Api:
    def __init__(self, queue: JobQueue, features: dict[str, Any], web_root: str | None) -> None:
        self._queue = queue
        self._features = features
        self._web_root = web_root
        self._next_number = 0

    def add_routes(self, routes: web.RouteTableDef) -> None:
        routes.get("/")(self.front_page)
        routes.get("/embeddings")(self.nothing_listed)
        routes.get("/extensions")(self.nothing_listed)
        routes.get("/features")(self.features)
        routes.get("/system_stats")(self.system_stats)
        routes.get("/prompt")(self.queue_status)
        routes.post("/prompt")(self.submit)
        routes.get("/object_info")(self.all_node_types)
        routes.get("/object_info/{node_class}")(self.one_node_type)
        routes.get("/history")(self.history)
        routes.get("/history/{prompt_id}")(self.history_of)
        routes.post("/history")(self.edit_history)
        routes.get("/queue")(self.queue)
        routes.post("/queue")(self.edit_queue)
        routes.post("/interrupt")(self.interrupt)
        routes.post("/free")(self.free)
        routes.get("/standin/options")(self.get_options)
        routes.post("/standin/options")(self.set_options)

    def status(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self._queue.remaining()}}

    async def front_page(self, request: web.Request) -> web.StreamResponse:
        # Started with --front-end-root <empty dir>, ComfyUI answers / with 404.
        index = os.path.join(self._web_root or "", "index.html")
        return web.FileResponse(index) if self._web_root and os.path.isfile(index) else _empty(404)

    async def nothing_listed(self, request: web.Request) -> web.Response:
        return web.json_response([])  # no embeddings, no front-end extensions

    async def features(self, request: web.Request) -> web.Response:
        return web.json_response(self._features)

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(system_stats())

    async def queue_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "number" in body:
            number = float(body["number"])
        else:
            number = -self._next_number if body.get("front") else self._next_number
            self._next_number += 1
        if "prompt" not in body:
            error = validation.problem("no_prompt", "No prompt provided", "No prompt provided")
            return _refused(error, {})
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        verdict = validation.validate(body["prompt"], body.get("partial_execution_targets"))
        extra_data = body.get("extra_data", {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if not verdict.accepted:
            log.warning("prompt refused: %s", verdict.error)
            return _refused(verdict.error or {}, verdict.node_errors)
        self._queue.submit(Job(number, prompt_id, body["prompt"], extra_data, verdict.outputs))
        log.info("queued prompt %s", prompt_id)
        if options.current.queue_reply_delay > 0:
            await asyncio.sleep(options.current.queue_reply_delay)
        return web.json_response({"prompt_id": prompt_id, "number": number,
                                  "node_errors": verdict.node_errors})

    async def all_node_types(self, request: web.Request) -> web.Response:
        return web.json_response(node_info.describe_all())

    async def one_node_type(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        known = name in registry.NODE_CLASSES
        return web.json_response({name: node_info.describe(name)} if known else {})

    async def history(self, request: web.Request) -> web.Response:
        query = request.rel_url.query
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query.get("offset", -1))
        return web.json_response(self._queue.history_page(max_items, offset))

    async def history_of(self, request: web.Request) -> web.Response:
        return web.json_response(self._queue.history(request.match_info["prompt_id"]))

    async def edit_history(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self._queue.forget_all()
        for prompt_id in body.get("delete", []):
            self._queue.forget(prompt_id)
        return _empty()

    async def queue(self, request: web.Request) -> web.Response:
        return web.json_response(self._queue.snapshot())

    async def edit_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self._queue.clear()
        for prompt_id in body.get("delete", []):
            self._queue.cancel(prompt_id)
        return _empty()

    async def interrupt(self, request: web.Request) -> web.Response:
        """Stop the running prompt; with a ``prompt_id``, only if that prompt is running."""
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {}
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        running = self._queue.running()
        if not wanted or (running is not None and running.prompt_id == wanted):
            mm.interrupt_current_processing()
        else:
            log.info("interrupt for prompt %s ignored: it is not running", wanted)
        return _empty()

    async def free(self, request: web.Request) -> web.Response:
        await request.json()  # nothing is loaded; a malformed body still fails as in ComfyUI
        return _empty()

    async def get_options(self, request: web.Request) -> web.Response:
        return web.json_response(options.current.as_dict())

    async def set_options(self, request: web.Request) -> web.Response:
        try:
            options.current.update(await request.json())
        except (ValueError, TypeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response(options.current.as_dict())
