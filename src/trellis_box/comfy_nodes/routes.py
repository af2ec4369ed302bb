"""``/trellis-box/health``, ``/ready`` and ``/info``, served by ComfyUI through the node pack.

They read the state file ``trellis-box serve`` writes (docs/interfaces.md): its path comes
from ``TRELLIS_BOX_STATE``; it is replaced atomically, so a read sees a whole document.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aiohttp import web

DEFAULT_STATE_PATH = "/tmp/trellis-box/state.json"


def state_path() -> Path:
    return Path(os.environ.get("TRELLIS_BOX_STATE", DEFAULT_STATE_PATH))


def read_state() -> dict[str, Any]:
    """The state document, or one saying why there is none (``phase`` ``unknown``)."""
    path = state_path()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"phase": "unknown", "ready": False,
                "error": f"no state file at {path}; trellis-box serve writes it "
                         "(set TRELLIS_BOX_STATE when it writes elsewhere)"}
    except (OSError, ValueError) as e:
        return {"phase": "unknown", "ready": False, "error": f"state file {path} unreadable: {e}"}
    if not isinstance(state, dict):
        return {"phase": "unknown", "ready": False,
                "error": f"state file {path} holds {type(state).__name__}, not an object"}
    return state


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    state = read_state()
    body = {"ready": state.get("ready") is True, "phase": state.get("phase"),
            "error": state.get("error")}
    return web.json_response(body, status=200 if body["ready"] else 503)


async def info(request: web.Request) -> web.Response:
    state = read_state()
    return web.json_response({
        "phase": state.get("phase"),
        "ready": state.get("ready") is True,
        "profile": state.get("profile"),
        "allowed_resolutions": state.get("allowed_resolutions"),
        "pins": state.get("pins"),
        "error": state.get("error"),
        "state_file": str(state_path()),
    })


def register(routes: web.RouteTableDef) -> None:
    routes.get("/trellis-box/health")(health)
    routes.get("/trellis-box/ready")(ready)
    routes.get("/trellis-box/info")(info)
