"""``/trellis-box/health``, ``/ready``, ``/info`` and ``/gpu``, served by ComfyUI through the
node pack.

The first three read the state file ``trellis-box serve`` writes (docs/interfaces.md): its path
comes from ``TRELLIS_BOX_STATE``; it is replaced atomically, so a read sees a whole document.
``/gpu`` reports torch's memory counters of ComfyUI's device and ``/gpu/reset-peak`` resets the
peaks, so ``trellis-box bench`` can measure each job's peak on its own.
"""

from __future__ import annotations

import importlib
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
        "weights_mode": state.get("weights_mode"),
        # Every ComfyUI worker of the container ({"index", "port", "ready", "restarts"}): a batch
        # client feeds them all, swap and status count every queue (docs/interfaces.md).
        "workers": state.get("workers"),
        "error": state.get("error"),
        "state_file": str(state_path()),
    })


def _cuda() -> tuple[Any, str | None]:
    """torch, or None and why there is no CUDA device to read.

    Imported here, not at the top: the pack stays importable without torch (its unit tests, the
    stand-in ComfyUI), and inside ComfyUI torch is loaded already, so this costs nothing.
    """
    try:
        torch = importlib.import_module("torch")
    except ImportError as e:
        return None, f"no torch in ComfyUI's interpreter ({e})"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} sees no CUDA device"
    return torch, None


def gpu_memory() -> dict[str, Any]:
    """torch's memory counters of ComfyUI's current device, or ``available: false`` and why."""
    torch, why = _cuda()
    if torch is None:
        return {"available": False, "reason": why}
    device = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(device)
    return {
        "available": True,
        "device_index": device,
        "device_name": torch.cuda.get_device_name(device),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "max_allocated_bytes": torch.cuda.max_memory_allocated(device),
        "max_reserved_bytes": torch.cuda.max_memory_reserved(device),
        "allocated_bytes": torch.cuda.memory_allocated(device),
        "reserved_bytes": torch.cuda.memory_reserved(device),
        "free_bytes": free,
        "total_bytes": total,
    }


async def gpu(request: web.Request) -> web.Response:
    return web.json_response(gpu_memory())


async def reset_gpu_peak(request: web.Request) -> web.Response:
    torch, why = _cuda()
    if torch is None:
        return web.json_response({"available": False, "reset": False, "reason": why})
    torch.cuda.reset_peak_memory_stats(torch.cuda.current_device())
    return web.json_response({"available": True, "reset": True})


def register(routes: web.RouteTableDef) -> None:
    routes.get("/trellis-box/health")(health)
    routes.get("/trellis-box/ready")(ready)
    routes.get("/trellis-box/info")(info)
    routes.get("/trellis-box/gpu")(gpu)
    routes.post("/trellis-box/gpu/reset-peak")(reset_gpu_peak)
