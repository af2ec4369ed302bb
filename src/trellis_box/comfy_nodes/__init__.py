"""trellis-box's ComfyUI node pack, installed as ``custom_nodes/trellis_box_nodes``.

Standard library only and importable without ComfyUI (for unit tests). Inside ComfyUI it also
adds the ``/trellis-box/*`` routes to ``PromptServer.instance.routes``; ComfyUI mounts them
before the server starts.
"""

from __future__ import annotations

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
    try:
        from server import PromptServer
    except ImportError:  # not running inside ComfyUI
        return
    from .routes import register

    register(PromptServer.instance.routes)


_register_routes()
