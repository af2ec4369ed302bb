"""The node types the server knows. ``nodes.NODE_CLASS_MAPPINGS`` is ``NODE_CLASSES`` itself,
so a pack registering a class there and the server reading it see one table."""

from __future__ import annotations

from typing import Any

# Node classes are duck-typed (INPUT_TYPES, RETURN_TYPES, FUNCTION, ...), as ComfyUI's are.
NodeClass = Any

NODE_CLASSES: dict[str, NodeClass] = {}
DISPLAY_NAMES: dict[str, str] = {}
# Custom node module name -> its directory (ComfyUI's nodes.LOADED_MODULE_DIRS).
PACK_DIRS: dict[str, str] = {}


def is_output(node_class: NodeClass) -> bool:
    return getattr(node_class, "OUTPUT_NODE", False) is True


def inputs_of(node_class: NodeClass) -> dict[str, dict[str, Any]]:
    """``INPUT_TYPES()``: sections ``required``, ``optional``, ``hidden``, each name -> spec."""
    spec: dict[str, dict[str, Any]] = node_class.INPUT_TYPES()
    return spec


def section_of(spec: dict[str, dict[str, Any]], name: str) -> str | None:
    return next((s for s in ("required", "optional", "hidden") if name in spec.get(s, {})), None)
