"""Node class attributes taken from the recorded ``/object_info`` (``standin_object_info.json``
in the ComfyUI root, which ``install`` copies from the package's verbatim copy of the recording).

The stand-in packs and core nodes declare only their behaviour; their schemas come from the
recording, so ``/object_info`` of the stand-in is the real server's, input for input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import cache
from typing import Any

_RECORDING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "standin_object_info.json")


@cache
def recorded_object_info() -> dict[str, Any]:
    with open(_RECORDING, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def input_types(name: str) -> dict[str, dict[str, Any]]:
    """``INPUT_TYPES()`` of a recorded class, each section in the recorded input order."""
    info = recorded_object_info()[name]
    result: dict[str, dict[str, Any]] = {}
    for section, order in info["input_order"].items():
        result[section] = {key: _as_tuple(info["input"][section][key]) for key in order}
    return result


def _as_tuple(spec: Any) -> Any:
    # Hidden inputs are plain strings ("PROMPT"); the others are (type, options) tuples.
    return tuple(spec) if isinstance(spec, list) else spec


def recorded(name: str) -> Callable[[type], type]:
    """Class decorator: everything but behaviour from the recording (``INPUT_TYPES`` too,
    unless the class computes its own, like ``LoadImage`` listing the input folder)."""
    info = recorded_object_info()[name]

    def apply(cls: type) -> type:
        cls.RETURN_TYPES = tuple(info["output"])  # type: ignore[attr-defined]
        cls.RETURN_NAMES = tuple(info["output_name"])  # type: ignore[attr-defined]
        cls.OUTPUT_IS_LIST = tuple(info["output_is_list"])  # type: ignore[attr-defined]
        cls.OUTPUT_NODE = info["output_node"]  # type: ignore[attr-defined]
        cls.CATEGORY = info["category"]  # type: ignore[attr-defined]
        cls.DESCRIPTION = info["description"]  # type: ignore[attr-defined]
        if "output_tooltips" in info:
            cls.OUTPUT_TOOLTIPS = tuple(info["output_tooltips"])  # type: ignore[attr-defined]
        if info.get("experimental"):
            cls.EXPERIMENTAL = True  # type: ignore[attr-defined]
        if "INPUT_TYPES" not in cls.__dict__:
            cls.INPUT_TYPES = classmethod(lambda _cls: input_types(name))  # type: ignore[attr-defined]
        return cls

    return apply


def display_name(name: str) -> str:
    return str(recorded_object_info()[name]["display_name"])
