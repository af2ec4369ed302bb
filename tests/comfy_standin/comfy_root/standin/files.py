"""``POST /upload/image`` and ``GET /view``: files in the input, output and temp folders.

Statuses follow ComfyUI 0.3.64: a path escaping its folder is 400 (upload, or ``..`` in a name)
or 403 (a ``/view`` subfolder outside the folder); a missing file is 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
from collections.abc import Mapping

import folder_paths
from aiohttp import web

from standin import options

# The recording machine's MIME table knew GLB (scenario 07); Python's own table does not.
mimetypes.add_type("model/gltf-binary", ".glb")
# Served as plain bytes: a browser must never run them from the server's origin.
_ACTIVE_CONTENT = {"text/html", "text/html-sandboxed", "application/xhtml+xml",
                   "text/javascript", "text/css"}


def _inside(folder: str, path: str) -> bool:
    return os.path.commonpath((folder, os.path.abspath(path))) == folder


def _free_name(folder: str, name: str, content: bytes) -> tuple[str, bool]:
    """A name for ``content`` in ``folder``: ``name``, or ``stem (N).ext`` when taken by other
    bytes. The flag says an identical file is already there (ComfyUI reuses it)."""
    stem, ext = os.path.splitext(name)
    digest = hashlib.sha256(content).digest()
    candidate, n = name, 0
    while os.path.exists(os.path.join(folder, candidate)):
        with open(os.path.join(folder, candidate), "rb") as existing:
            if hashlib.sha256(existing.read()).digest() == digest:
                return candidate, True
        n += 1
        candidate = f"{stem} ({n}){ext}"
    return candidate, False


async def upload_image(request: web.Request) -> web.Response:
    form = await request.post()
    field = form.get("image")
    kind = str(form.get("type") or "input")
    # An unknown type fails with 500, as ComfyUI's lookup does.
    folder = {"input": folder_paths.get_input_directory, "temp": folder_paths.get_temp_directory,
              "output": folder_paths.get_output_directory}[kind]()
    subfolder = str(form.get("subfolder", ""))
    target = os.path.join(folder, os.path.normpath(subfolder))
    if not (isinstance(field, web.FileField) and field.filename
            and _inside(folder, os.path.join(target, field.filename))):
        return web.Response(status=400)
    os.makedirs(target, exist_ok=True)
    content = field.file.read()
    name, already_there = field.filename, False
    if form.get("overwrite") not in ("true", "1"):
        name, already_there = _free_name(target, name, content)
    if not already_there:
        with open(os.path.join(target, name), "wb") as out:
            out.write(content)
    return web.json_response({"name": name, "subfolder": subfolder, "type": kind})


def _located(query: Mapping[str, str]) -> tuple[int, str]:
    """(0, file path) or (HTTP status, "") for a ``/view`` query."""
    if "filename" not in query:
        return 404, ""
    name, folder = folder_paths.annotated_filepath(query["filename"])
    if not name or name.startswith("/") or ".." in name:
        return 400, ""
    folder = folder or folder_paths.get_directory_by_type(query.get("type", "output"))
    if folder is None:
        return 400, ""
    if "subfolder" in query:
        nested = os.path.join(folder, query["subfolder"])
        if not _inside(folder, nested):
            return 403, ""
        folder = nested
    path = os.path.join(folder, os.path.basename(name))
    return (0, path) if os.path.isfile(path) else (404, "")


async def view(request: web.Request) -> web.StreamResponse:
    if options.current.view_delay > 0:
        await asyncio.sleep(options.current.view_delay)
    status, path = _located(request.rel_url.query)
    if status:
        return web.Response(status=status)
    name = os.path.basename(path)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if content_type in _ACTIVE_CONTENT:
        content_type = "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Disposition": f'filename="{name}"',
                                           "Content-Type": content_type})


def add_routes(routes: web.RouteTableDef) -> None:
    routes.post("/upload/image")(upload_image)
    routes.get("/view")(view)
