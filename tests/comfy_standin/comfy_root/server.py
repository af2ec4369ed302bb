"""``PromptServer``: ComfyUI 0.3.64's HTTP API and websocket, as the recordings show them.

Custom nodes import this module and add routes to ``PromptServer.instance.routes`` at import
time; ``add_routes`` mounts them (also under ``/api``) before the server starts, as ComfyUI does.
Messages from the worker thread go through ``send_sync`` to one publishing task.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import mimetypes
import os
import sys
import uuid
from typing import Any

from aiohttp import WSMsgType, web

import comfyui_version
import execution
import folder_paths
import nodes
import standin_options
from comfy.cli_args import args

# What the recording machine's MIME table said for a GLB (scenario 07); Python's own table
# lacks it, so add it as the recorded server had it.
mimetypes.add_type("model/gltf-binary", ".glb")

RECORDED_SYSTEM = {
    "required_frontend_version": "1.27.10",
    "installed_templates_version": "0.1.95",
    "required_templates_version": "0.1.95",
    "pytorch_version": "2.14.1+cu130",
}


class PromptServer:
    instance: PromptServer

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        PromptServer.instance = self
        self.loop = loop
        self.messages: asyncio.Queue[tuple[Any, Any, str | None]] = asyncio.Queue()
        self.prompt_queue = execution.PromptQueue(self)
        self.number = 0
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.progress: execution.ProgressRegistry | None = None  # of the running prompt
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.socket_requests: dict[str, web.Request] = {}
        self.messages_sent: dict[str, int] = {}
        self.app = web.Application(client_max_size=round(args.max_upload_size * 1024 * 1024))
        self.web_root = args.front_end_root
        self.routes = web.RouteTableDef()
        self._define_routes(self.routes)

    # --- routes --------------------------------------------------------------------------

    def _define_routes(self, routes: web.RouteTableDef) -> None:
        routes.get("/ws")(self.websocket_handler)
        routes.get("/")(self.get_root)
        routes.get("/embeddings")(self.empty_list)
        routes.get("/extensions")(self.empty_list)
        routes.get("/features")(self.get_features)
        routes.post("/upload/image")(self.upload_image)
        routes.get("/view")(self.view)
        routes.get("/system_stats")(self.system_stats)
        routes.get("/prompt")(self.get_prompt)
        routes.post("/prompt")(self.post_prompt)
        routes.get("/object_info")(self.object_info)
        routes.get("/object_info/{node_class}")(self.object_info_node)
        routes.get("/history")(self.get_history)
        routes.get("/history/{prompt_id}")(self.get_history_prompt)
        routes.post("/history")(self.post_history)
        routes.get("/queue")(self.get_queue)
        routes.post("/queue")(self.post_queue)
        routes.post("/interrupt")(self.post_interrupt)
        routes.post("/free")(self.post_free)
        routes.get("/standin/options")(self.get_options)
        routes.post("/standin/options")(self.post_options)

    async def websocket_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        self.socket_requests[sid] = request
        self.messages_sent[sid] = 0
        try:
            await self.send("status", {"status": self.get_queue_info(), "sid": sid}, sid)
            # A client reconnecting while its prompt runs learns which node is executing.
            if self.client_id == sid and self.last_node_id is not None:
                await self.send("executing", {"node": self.last_node_id}, sid)
            first_message = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except json.JSONDecodeError:
                        logging.warning(f"Invalid JSON received from client {sid}: {msg.data}")
                        continue
                    if first_message and isinstance(data, dict) and data.get("type") == "feature_flags":
                        await self.send("feature_flags", self.features(), sid)
                    first_message = False
        finally:
            if self.sockets.get(sid) is ws:
                self.sockets.pop(sid, None)
                self.socket_requests.pop(sid, None)
        return ws

    async def get_root(self, request: web.Request) -> web.StreamResponse:
        if self.web_root is None or not os.path.isfile(os.path.join(self.web_root, "index.html")):
            return web.Response(status=404)
        return web.FileResponse(os.path.join(self.web_root, "index.html"))

    async def empty_list(self, request: web.Request) -> web.Response:
        # No embeddings and no front-end extensions in the stand-in.
        return _json([])

    async def get_features(self, request: web.Request) -> web.Response:
        return _json(self.features())

    async def get_prompt(self, request: web.Request) -> web.Response:
        return _json(self.get_queue_info())

    def features(self) -> dict[str, Any]:
        return {"supports_preview_metadata": True,
                "max_upload_size": round(args.max_upload_size * 1024 * 1024)}

    async def upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        overwrite = post.get("overwrite")
        upload_type = str(post.get("type") or "input")
        upload_dir = {"input": folder_paths.get_input_directory,
                      "temp": folder_paths.get_temp_directory,
                      "output": folder_paths.get_output_directory}[upload_type]()
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        filename = image.filename
        subfolder = str(post.get("subfolder", ""))
        full_output_folder = os.path.join(upload_dir, os.path.normpath(subfolder))
        filepath = os.path.abspath(os.path.join(full_output_folder, filename))
        if os.path.commonpath((upload_dir, filepath)) != upload_dir:
            return web.Response(status=400)
        os.makedirs(full_output_folder, exist_ok=True)
        content = image.file.read()
        duplicate = False
        if overwrite not in ("true", "1"):
            stem, suffix = os.path.splitext(filename)
            i = 1
            while os.path.exists(filepath):
                # Same name and same bytes: reuse the file (ComfyUI issue #3465).
                with open(filepath, "rb") as f:
                    if hashlib.sha256(f.read()).digest() == hashlib.sha256(content).digest():
                        duplicate = True
                        break
                filename = f"{stem} ({i}){suffix}"
                filepath = os.path.join(full_output_folder, filename)
                i += 1
        if not duplicate:
            with open(filepath, "wb") as f:
                f.write(content)
        return _json({"name": filename, "subfolder": subfolder, "type": upload_type})

    async def view(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        if standin_options.current.view_delay > 0:
            await asyncio.sleep(standin_options.current.view_delay)
        if "filename" not in query:
            return web.Response(status=404)
        filename, output_dir = folder_paths.annotated_filepath(query["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if output_dir is None:
            output_dir = folder_paths.get_directory_by_type(query.get("type", "output"))
        if output_dir is None:
            return web.Response(status=400)
        if "subfolder" in query:
            full_output_dir = os.path.join(output_dir, query["subfolder"])
            if os.path.commonpath((os.path.abspath(full_output_dir), output_dir)) != output_dir:
                return web.Response(status=403)
            output_dir = full_output_dir
        filename = os.path.basename(filename)
        file = os.path.join(output_dir, filename)
        if not os.path.isfile(file):
            return web.Response(status=404)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in {"text/html", "text/html-sandboxed", "application/xhtml+xml",
                            "text/javascript", "text/css"}:
            content_type = "application/octet-stream"
        return web.FileResponse(file, headers={"Content-Disposition": f'filename="{filename}"',
                                               "Content-Type": content_type})

    async def system_stats(self, request: web.Request) -> web.Response:
        options = standin_options.current
        ram = standin_options.RECORDED_RAM_BYTES
        if options.gpu_name:
            vram = options.vram_bytes or 24 * 1024**3
            device = {"name": f"cuda:0 {options.gpu_name} : cudaMallocAsync", "type": "cuda",
                      "index": 0, "vram_total": vram, "vram_free": vram - 512 * 1024**2,
                      "torch_vram_total": 0, "torch_vram_free": 0}
        else:
            vram = options.vram_bytes or ram
            device = {"name": "cpu", "type": "cpu", "index": None, "vram_total": vram,
                      "vram_free": vram, "torch_vram_total": vram, "torch_vram_free": vram}
        return _json({
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
        })

    async def post_prompt(self, request: web.Request) -> web.Response:
        logging.info("got prompt")
        json_data = await request.json()
        if "number" in json_data:
            number = float(json_data["number"])
        else:
            number = self.number
            if json_data.get("front"):
                number = -number
            self.number += 1
        if "prompt" not in json_data:
            error = {"type": "no_prompt", "message": "No prompt provided",
                     "details": "No prompt provided", "extra_info": {}}
            return _json({"error": error, "node_errors": {}}, status=400)
        prompt = json_data["prompt"]
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        valid = execution.validate_prompt(prompt, json_data.get("partial_execution_targets"))
        extra_data = json_data.get("extra_data", {})
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if not valid[0]:
            logging.warning(f"invalid prompt: {valid[1]}")
            return _json({"error": valid[1], "node_errors": valid[3]}, status=400)
        self.prompt_queue.put((number, prompt_id, prompt, extra_data, valid[2]))
        return _json({"prompt_id": prompt_id, "number": number, "node_errors": valid[3]})

    def node_info(self, node_class: str) -> dict[str, Any]:
        obj_class = nodes.NODE_CLASS_MAPPINGS[node_class]
        input_types = obj_class.INPUT_TYPES()
        info: dict[str, Any] = {
            "input": input_types,
            "input_order": {key: list(value.keys()) for key, value in input_types.items()},
            "output": obj_class.RETURN_TYPES,
            "output_is_list": getattr(obj_class, "OUTPUT_IS_LIST",
                                      [False] * len(obj_class.RETURN_TYPES)),
            "output_name": getattr(obj_class, "RETURN_NAMES", obj_class.RETURN_TYPES),
            "name": node_class,
            "display_name": nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_class, node_class),
            "description": getattr(obj_class, "DESCRIPTION", ""),
            "python_module": getattr(obj_class, "RELATIVE_PYTHON_MODULE", "nodes"),
            "category": getattr(obj_class, "CATEGORY", "sd"),
            "output_node": getattr(obj_class, "OUTPUT_NODE", False) is True,
        }
        if hasattr(obj_class, "OUTPUT_TOOLTIPS"):
            info["output_tooltips"] = obj_class.OUTPUT_TOOLTIPS
        if getattr(obj_class, "DEPRECATED", False):
            info["deprecated"] = True
        if getattr(obj_class, "EXPERIMENTAL", False):
            info["experimental"] = True
        return info

    async def object_info(self, request: web.Request) -> web.Response:
        out = {}
        for name in nodes.NODE_CLASS_MAPPINGS:
            try:
                out[name] = self.node_info(name)
            except Exception:
                logging.exception("[ERROR] An error occurred while retrieving information for "
                                  f"the '{name}' node.")
        return _json(out)

    async def object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return _json({name: self.node_info(name)} if name in nodes.NODE_CLASS_MAPPINGS else {})

    async def get_history(self, request: web.Request) -> web.Response:
        query = request.rel_url.query
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query["offset"]) if "offset" in query else -1
        return _json(self.prompt_queue.get_history(max_items=max_items, offset=offset))

    async def get_history_prompt(self, request: web.Request) -> web.Response:
        return _json(self.prompt_queue.get_history(prompt_id=request.match_info["prompt_id"]))

    async def post_history(self, request: web.Request) -> web.Response:
        json_data = await request.json()
        if json_data.get("clear"):
            self.prompt_queue.wipe_history()
        for prompt_id in json_data.get("delete", []):
            self.prompt_queue.delete_history_item(prompt_id)
        return web.Response(status=200)

    async def get_queue(self, request: web.Request) -> web.Response:
        running, pending = self.prompt_queue.get_current_queue()
        return _json({"queue_running": running, "queue_pending": pending})

    async def post_queue(self, request: web.Request) -> web.Response:
        json_data = await request.json()
        if json_data.get("clear"):
            self.prompt_queue.wipe_queue()
        for prompt_id in json_data.get("delete", []):
            self.prompt_queue.delete_queue_item(prompt_id)
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        try:
            json_data = await request.json()
        except json.JSONDecodeError:
            json_data = {}
        prompt_id = json_data.get("prompt_id") if isinstance(json_data, dict) else None
        if prompt_id:
            running, _ = self.prompt_queue.get_current_queue()
            if any(item[1] == prompt_id for item in running):
                logging.info(f"Interrupting prompt {prompt_id}")
                nodes.interrupt_processing()
            else:
                logging.info(f"Prompt {prompt_id} is not currently running, skipping interrupt")
        else:
            logging.info("Global interrupt (no prompt_id specified)")
            nodes.interrupt_processing()
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.Response:
        await request.json()
        return web.Response(status=200)

    async def get_options(self, request: web.Request) -> web.Response:
        return _json(standin_options.current.as_dict())

    async def post_options(self, request: web.Request) -> web.Response:
        try:
            standin_options.current.update(await request.json())
        except (ValueError, TypeError) as e:
            return _json({"error": str(e)}, status=400)
        return _json(standin_options.current.as_dict())

    # --- mounting and messages -------------------------------------------------------------

    def add_routes(self) -> None:
        api_routes = web.RouteTableDef()
        for route in self.routes:
            if isinstance(route, web.RouteDef):
                api_routes.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
        self.app.add_routes(api_routes)
        self.app.add_routes(self.routes)

    def get_queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.prompt_queue.get_tasks_remaining()}}

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        message = {"type": event, "data": data}
        targets = list(self.sockets) if sid is None else [sid] if sid in self.sockets else []
        for target in targets:
            ws = self.sockets.get(target)
            if ws is None:
                continue
            try:
                await ws.send_json(message)
            except Exception as e:  # a client that went away must not stop the others
                logging.warning(f"send error: {e}")
                continue
            self.messages_sent[target] = self.messages_sent.get(target, 0) + 1
            limit = standin_options.current.drop_ws_after
            if limit and self.messages_sent[target] >= limit:
                self._drop_socket(target)

    def _drop_socket(self, sid: str) -> None:
        """Cut the connection without a close frame, as a crashed proxy or network would."""
        request = self.socket_requests.pop(sid, None)
        self.sockets.pop(sid, None)
        if request is not None and request.transport is not None:
            request.transport.abort()

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        self.loop.call_soon_threadsafe(self.messages.put_nowait, (event, data, sid))

    def queue_updated(self) -> None:
        self.send_sync("status", {"status": self.get_queue_info()})

    async def publish_loop(self) -> None:
        while True:
            event, data, sid = await self.messages.get()
            await self.send(event, data, sid)

    async def start_multi_address(self, addresses: list[tuple[str, int]]) -> list[int]:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        logging.info("Starting server\n")
        ports = []
        for address, port in addresses:
            site = web.TCPSite(runner, address, port)
            await site.start()
            server = site._server
            bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port
            ports.append(bound)
            shown = f"[{address}]" if ":" in address else address
            logging.info(f"To see the GUI go to: http://{shown}:{bound}")
        return ports


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)
