"""``GET /object_info``: each node type's schema in ComfyUI 0.3.64's layout (keys in its order)."""

from __future__ import annotations

import logging
from typing import Any

from standin import registry

log = logging.getLogger("standin.node_info")


def describe(name: str) -> dict[str, Any]:
    node_class = registry.NODE_CLASSES[name]
    spec = registry.inputs_of(node_class)
    returns = node_class.RETURN_TYPES
    info: dict[str, Any] = {
        "input": spec,
        "input_order": {section: list(inputs) for section, inputs in spec.items()},
        "output": returns,
        "output_is_list": getattr(node_class, "OUTPUT_IS_LIST", [False] * len(returns)),
        "output_name": getattr(node_class, "RETURN_NAMES", returns),
        "name": name,
        "display_name": registry.DISPLAY_NAMES.get(name, name),
        "description": getattr(node_class, "DESCRIPTION", ""),
        "python_module": getattr(node_class, "RELATIVE_PYTHON_MODULE", "nodes"),
        "category": getattr(node_class, "CATEGORY", "sd"),
        "output_node": registry.is_output(node_class),
    }
    if hasattr(node_class, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = node_class.OUTPUT_TOOLTIPS
    for flag in ("deprecated", "experimental"):
        if getattr(node_class, flag.upper(), False):
            info[flag] = True
    return info


def describe_all() -> dict[str, Any]:
    described = {}
    for name in registry.NODE_CLASSES:
        try:
            described[name] = describe(name)
        except Exception:  # one broken node type must not hide the others
            log.exception("cannot describe node type %s; left out of /object_info", name)
    return described
