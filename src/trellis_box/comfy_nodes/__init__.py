"""trellis-box's ComfyUI node pack, installed as ``custom_nodes/trellis_box_nodes``.

Standard library only and importable without ComfyUI (for unit tests). Inside ComfyUI it also
adds the ``/trellis-box/*`` routes to ``PromptServer.instance.routes``; ComfyUI mounts them
before the server starts.
"""

from __future__ import annotations

import sys

from .glb_output import GLBOutputError, TrellisBoxGLBOutput
from .glb_stats import GLBFormatError, GLBStats, glb_stats

NODE_CLASS_MAPPINGS = {"TrellisBoxGLBOutput": TrellisBoxGLBOutput}
NODE_DISPLAY_NAME_MAPPINGS = {"TrellisBoxGLBOutput": "trellis-box GLB output"}

__all__ = [
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "GLBFormatError",
    "GLBOutputError",
    "GLBStats",
    "TrellisBoxGLBOutput",
    "glb_stats",
]


def _register_routes() -> None:
    # Only when ComfyUI loads the pack: it imports its ``server`` and builds the PromptServer before
    # any custom node. Importing ``server`` here instead would, wherever ComfyUI's root is on
    # sys.path (``python -m trellis_box...`` run there), pull all of ComfyUI, torch and a CUDA
    # context into whatever process imported trellis-box (serve held 518 MiB of the GPU that way).
    server = sys.modules.get("server")
    prompt_server = getattr(getattr(server, "PromptServer", None), "instance", None)
    if prompt_server is None:
        return
    from .routes import register

    register(prompt_server.routes)


_register_routes()
