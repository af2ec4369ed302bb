"""``nodes``: the node registry and core node classes under the names custom nodes import."""

from __future__ import annotations

import comfy.model_management as mm
from standin import core_nodes, registry
from standin.core_nodes import ImageScale, LoadImage, Preview3D, PreviewImage, SaveGLB, SaveImage

__all__ = ["LOADED_MODULE_DIRS", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS",
           "ImageScale", "LoadImage", "Preview3D", "PreviewImage", "SaveGLB", "SaveImage",
           "before_node_execution", "interrupt_processing"]

# As in ComfyUI, the core node types are there as soon as this module is imported.
core_nodes.register()
NODE_CLASS_MAPPINGS = registry.NODE_CLASSES
NODE_DISPLAY_NAME_MAPPINGS = registry.DISPLAY_NAMES
LOADED_MODULE_DIRS = registry.PACK_DIRS


def interrupt_processing(value: bool = True) -> None:
    mm.interrupt_current_processing(value)


def before_node_execution() -> None:
    mm.throw_exception_if_processing_interrupted()
